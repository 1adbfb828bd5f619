"""identity.0004 fills the unique email key of existing users, and stops, naming the ids, when old rows alias one
another (registered before the canonical-email rule), changing nothing."""

import uuid

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

pytestmark = pytest.mark.django_db(transaction=True)
BEFORE = [("identity", "0003_onchain_error")]
AFTER = [("identity", "0004_email_canonical_session_version")]


@pytest.fixture
def migrator():
    """Moves identity's schema to a migration and back to the latest when the test ends."""

    def migrate(targets):
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(targets)
        return executor.loader.project_state(targets).apps

    yield migrate
    MigrationExecutor(connection).migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())


def old_users(apps, *emails):
    User = apps.get_model("identity", "User")
    return [User.objects.create(id=uuid.uuid4(), email=email, password="!").pk for email in emails]


def test_it_fills_the_key_of_every_existing_user(migrator):
    apps = migrator(BEFORE)
    ids = old_users(apps, "ada@example.com", "bola@b\u00fccher.de", "\u017fam@example.com")
    apps = migrator(AFTER)
    User = apps.get_model("identity", "User")
    keys = dict(User.objects.values_list("id", "email_canonical"))
    assert keys == {ids[0]: "ada@example.com", ids[1]: "bola@xn--bcher-kva.de", ids[2]: "sam@example.com"}
    assert set(User.objects.values_list("session_version", flat=True)) == {0}


def test_it_stops_on_colliding_rows_naming_their_ids_and_changes_nothing(migrator):
    apps = migrator(BEFORE)
    staff, impostor, alice, quoted, loner = old_users(
        apps, "staff@example.com", "\u017ftaff@example.com", "alice@example.com", '"alice"@example.com',
        "loner@example.com")

    with pytest.raises(Exception, match="2 group") as stopped:
        migrator(AFTER)

    report = str(stopped.value)
    assert f"{staff}, {impostor}" in report and f"{alice}, {quoted}" in report
    assert str(loner) not in report
    assert "staff@example.com" not in report  # ids only: the report goes to logs
    with connection.cursor() as cursor:
        columns = {column.name for column in connection.introspection.get_table_description(cursor, "identity_user")}
    assert "email_canonical" not in columns, "the migration must roll back as a whole"

    apps = migrator(BEFORE)
    apps.get_model("identity", "User").objects.filter(pk__in=[impostor, quoted]).delete()  # the operator decides
    apps = migrator(AFTER)
    assert apps.get_model("identity", "User").objects.count() == 3
