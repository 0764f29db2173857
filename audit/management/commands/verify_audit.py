from django.core.management.base import BaseCommand, CommandError

from audit import chain
from audit import services as audit


class Command(BaseCommand):
    help = (
        "Walk the audit hash chain and its signed checkpoints; report the first broken link, gap, edited, "
        "inserted or reordered event. Exits 1 when the log was tampered with."
    )

    def add_arguments(self, parser):
        parser.add_argument("--checkpoint", action="store_true", help="sign a checkpoint of the head afterwards")

    def handle(self, *args, checkpoint=False, **options):
        result = audit.verify_chain(actor=None, via="manage.py verify_audit")
        for problem in result.problems:
            self.stdout.write(f"  {problem}")
        self.stdout.write(result.summary())
        if checkpoint and result.ok:
            made = chain.checkpoint()
            if made:
                self.stdout.write(f"Signed checkpoint at seq {made.seq}.")
        if not result.ok:
            raise CommandError("the audit log does not verify")
