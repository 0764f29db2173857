from django.core.management.base import BaseCommand, CommandError

from audit import checkpoints
from audit import services as audit


class Command(BaseCommand):
    help = (
        "Walk the audit hash chain, its signed checkpoints and the anchor outside the database; report every "
        "broken link, gap, edited, inserted or reordered event, rewritten or deleted checkpoint and deleted "
        "tail. Exits 1 when the log was tampered with."
    )

    def add_arguments(self, parser):
        parser.add_argument("--checkpoint", action="store_true", help="sign and anchor a checkpoint of the head after")
        parser.add_argument(
            "--anchor",
            metavar="FILE",
            help="compare with this copy of the anchor (e.g. the portal-audit lines from the log host) instead of "
            "PORTAL_AUDIT_ANCHOR",
        )

    def handle(self, *args, checkpoint=False, anchor=None, **options):
        result = audit.verify_chain(actor=None, via="manage.py verify_audit", anchor_path=anchor)
        for problem in result.problems:
            self.stdout.write(f"  {problem}")
        for note in result.notes:
            self.stdout.write(f"  note: {note}")
        self.stdout.write(result.summary())
        if not result.ok:
            raise CommandError("the audit log does not verify")
        if checkpoint:
            try:
                made = checkpoints.checkpoint()
            except checkpoints.CheckpointRefused as exc:
                raise CommandError(f"no checkpoint signed: {exc}") from None
            if made:
                self.stdout.write(f"Signed checkpoint {made.number} at seq {made.seq}.")
