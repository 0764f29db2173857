"""Checkpoints become append-only like events, and the chain head only moves forward.

On PostgreSQL, triggers refuse UPDATE and DELETE on ``audit_checkpoint`` and, on ``audit_chainhead``,
DELETE and any UPDATE that moves the head back or changes the hash at the same position, from any
client (the ORM refuses checkpoint changes on every database). A superuser can switch triggers off:
that attacker is what the anchor outside the database is for (docs/audit.md). TRUNCATE is a statement,
not a row change, and stays with the database's privileges (production grants none on these tables;
Django's test flush truncates them)."""

from django.db import migrations, models

CREATE = """
CREATE OR REPLACE FUNCTION audit_refuse_row_change() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'Audit checkpoints can only be inserted.';
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER audit_checkpoint_append_only
    BEFORE UPDATE OR DELETE ON audit_checkpoint
    FOR EACH ROW EXECUTE FUNCTION audit_refuse_row_change();

CREATE OR REPLACE FUNCTION audit_head_forward_only() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' OR NEW.id <> OLD.id OR NEW.seq < OLD.seq
       OR (NEW.seq = OLD.seq AND NEW.hash <> OLD.hash) THEN
        RAISE EXCEPTION 'audit_chainhead only moves forward: % refused', TG_OP
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'The chain head is moved by inserting audit events.';
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER audit_chainhead_forward_only
    BEFORE UPDATE OR DELETE ON audit_chainhead
    FOR EACH ROW EXECUTE FUNCTION audit_head_forward_only();
"""

DROP = """
DROP TRIGGER IF EXISTS audit_chainhead_forward_only ON audit_chainhead;
DROP FUNCTION IF EXISTS audit_head_forward_only();
DROP TRIGGER IF EXISTS audit_checkpoint_append_only ON audit_checkpoint;
DROP FUNCTION IF EXISTS audit_refuse_row_change();
"""


def create_triggers(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE, params=None)


def drop_triggers(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP, params=None)


class Migration(migrations.Migration):
    dependencies = [("audit", "0007_checkpoint_continuity")]

    operations = [
        migrations.AlterField(model_name="checkpoint", name="number", field=models.BigIntegerField(unique=True)),
        migrations.AlterField(
            model_name="checkpoint",
            name="events",
            field=models.BigIntegerField(help_text="Chained events in the table up to seq, when it was signed."),
        ),
        migrations.AlterField(
            model_name="checkpoint",
            name="prev_signature",
            field=models.CharField(help_text="The previous checkpoint's signature (zeros: none).", max_length=64),
        ),
        migrations.RunPython(create_triggers, drop_triggers),
    ]
