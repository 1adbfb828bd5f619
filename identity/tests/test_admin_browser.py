"""The real KYC review admin in headless Chromium: a reviewer logs in, approves one submission, rejects another.

Needs Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them). Skipped only on a developer's
machine without Chromium; with ``CI`` set a missing browser is a failure, not a skip.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest
from django.contrib.auth.models import Permission

from identity.models import KycStatus, KycSubmission, ProfileStatus
from identity.tests.conftest import PASSWORD
from identity.tests.test_services import submit
from outbox.models import CommandType, OutboxCommand

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER) and not os.environ.get("CI"),
                       reason="chromium/chromium-driver not installed (CI installs them and runs this test)"),
]


@pytest.fixture
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile_dir = tempfile.mkdtemp(prefix="gx-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM or "chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={profile_dir}", "--window-size=1400,1000"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER or "chromedriver"), options=options)
    driver.implicitly_wait(10)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile_dir, ignore_errors=True)


def select_and_run(driver, submission: KycSubmission, action: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    driver.find_element(By.CSS_SELECTOR, f'input[name="_selected_action"][value="{submission.pk}"]').click()
    Select(driver.find_element(By.NAME, "action")).select_by_value(action)
    driver.find_element(By.CSS_SELECTOR, 'button[name="index"], input[name="index"]').click()


def test_a_reviewer_approves_one_submission_and_rejects_another_with_a_reason(live_server, browser, make_person):
    from selenium.webdriver.common.by import By

    reviewer = make_person(staff=True).user
    reviewer.user_permissions.add(*Permission.objects.filter(
        codename__in=["view_kycsubmission", "change_kycsubmission"]))
    approved_person, rejected_person = make_person(first_name="Approved"), make_person(first_name="Rejected")
    to_approve, to_reject = submit(approved_person), submit(rejected_person)

    browser.get(f"{live_server.url}/admin/login/?next=/admin/identity/kycsubmission/")
    browser.find_element(By.NAME, "username").send_keys(reviewer.email)
    browser.find_element(By.NAME, "password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, 'input[type="submit"], button[type="submit"]').click()

    queue = browser.find_element(By.ID, "result_list").text
    assert approved_person.user.email in queue and rejected_person.user.email in queue

    select_and_run(browser, to_approve, "approve_selected")
    assert "Approved 1 submission" in browser.find_element(By.CSS_SELECTOR, "ul.messagelist").text
    assert approved_person.user.email not in browser.find_element(By.ID, "result_list").text  # left the queue

    select_and_run(browser, to_reject, "reject_selected")
    browser.find_element(By.NAME, "reason").send_keys("Document photo is blurred")
    browser.find_element(By.NAME, "confirm_reject").click()
    assert "Rejected 1 submission" in browser.find_element(By.CSS_SELECTOR, "ul.messagelist").text

    approved_person.refresh_from_db()
    rejected_person.refresh_from_db()
    to_approve.refresh_from_db()
    to_reject.refresh_from_db()
    assert approved_person.status == ProfileStatus.APPROVED_PENDING_ONCHAIN
    assert rejected_person.status == ProfileStatus.KYC_REJECTED
    assert (to_approve.status, to_approve.reviewed_by_id) == (KycStatus.APPROVED, reviewer.pk)
    assert (to_reject.status, to_reject.rejection_reason, to_reject.reviewed_by_id) == (
        KycStatus.REJECTED, "Document photo is blurred", reviewer.pk)
    command = OutboxCommand.objects.get()
    assert (command.command_type, command.aggregate_id, command.requested_by_id) == (
        CommandType.CREATE_USER, approved_person.pk.hex, reviewer.pk)
    assert command.payload["user_id"] == approved_person.pk.hex
    assert command.payload["biometric_hash"] == to_approve.biometric_hash
    assert command.payload["nationality"] == "NG"
