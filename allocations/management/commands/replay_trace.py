from django.core.management.base import BaseCommand, CommandError

from allocations.placement import engine, replay


class Command(BaseCommand):
    help = (
        "Replay an openb trace through the placement engine (protocol of shared/traces/README.md): "
        "NODES PODS --policy first-fit|best-fit|random|fgd|ours --model fractional|vgpu --seeds 42-51 "
        "--out placements.jsonl. Per-seed lines go to stderr; the JSON summary is printed last."
    )

    def add_arguments(self, parser):
        parser.add_argument("nodes")
        parser.add_argument("pods")
        parser.add_argument("--policy", default="ours")
        parser.add_argument("--model", default="fractional", choices=["fractional", "vgpu"])
        parser.add_argument("--seeds", default="42-51")
        parser.add_argument("--out", default=None, help="placement JSONL file")
        parser.add_argument("--limit", type=int, default=None, help="only the first N arrivals of each seed")

    def handle(self, *args, nodes, pods, policy, model, seeds, out, limit, **options):
        if policy not in engine.POLICIES:
            raise CommandError(f"policy must be one of {', '.join(engine.POLICIES)}")
        try:
            replay.run(nodes, pods, policy=policy, model=model, seeds=seeds, out_path=out, limit=limit)
        except OSError as exc:
            raise CommandError(f"cannot read or write: {exc}") from None
