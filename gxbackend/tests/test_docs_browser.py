"""Swagger UI in headless Chromium: served by the app itself, rendered under its Content-Security-Policy.

Same browser set-up as the admin's browser test (Debian's chromium + chromium-driver, installed by .ci/run).
"""

from __future__ import annotations

import pytest

from identity.tests.test_admin_browser import browser, pytestmark  # noqa: F401 - the fixture and its skip rule


@pytest.fixture
def logging_browser(browser):  # noqa: F811 - the imported fixture
    browser.get_log("browser")  # start from an empty console
    return browser


def test_swagger_ui_renders_every_operation_from_this_origin_under_the_csp(live_server, logging_browser):
    from selenium.webdriver.common.by import By

    logging_browser.get(f"{live_server.url}/api/docs/")
    operations = logging_browser.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")
    assert len(operations) >= 10
    assert "/api/v1/transfers" in {op.text.replace("\u200b", "") for op in operations}
    loaded = logging_browser.execute_script(
        "return performance.getEntriesByType('resource').map(function (e) { return e.name; });")
    assert loaded and all(url.startswith(live_server.url) for url in loaded), loaded  # no CDN
    console = [entry["message"] for entry in logging_browser.get_log("browser")]
    assert not [line for line in console if "Content Security Policy" in line or "Refused to" in line], console
