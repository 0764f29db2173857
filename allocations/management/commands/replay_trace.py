from django.core.management.base import BaseCommand, CommandError

from allocations.placement import replay


class Command(BaseCommand):
    help = (
        "Replay an openb trace through the placement engine (protocol of shared/traces/README.md): "
        "NODES PODS --policy first-fit|best-fit|random|fgd|ours --model fractional|vgpu --seeds 42-51 "
        "--out placements.jsonl. Per-seed lines go to stderr; the JSON summary is printed last."
    )

    def add_arguments(self, parser):
        replay.add_arguments(parser)

    def handle(self, *args, nodes, pods, policy, model, seeds, out, limit, **options):
        try:
            replay.run(nodes, pods, policy=policy, model=model, seeds=seeds, out_path=out, limit=limit)
        except OSError as exc:
            raise CommandError(f"cannot read or write: {exc}") from None
