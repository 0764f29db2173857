from django.core.management.base import BaseCommand, CommandError
from django.db import connection

from allocations.placement import replay


class Command(BaseCommand):
    help = (
        "Replay an openb trace through the placement engine (protocol of shared/traces/README.md): "
        "NODES PODS --policy first-fit|best-fit|random|fgd|ours --model fractional|vgpu --seeds 42-51 "
        "--out placements.jsonl. Per-seed lines go to stderr; the JSON summary is printed last. "
        "--through-db replays one seed (vgpu model) through the real request service in a scratch "
        "database on the configured server (PostgreSQL for figures) and reports decisions per second."
    )

    def add_arguments(self, parser):
        replay.add_arguments(parser)
        parser.add_argument(
            "--through-db",
            action="store_true",
            help="one seed through request_desktop on the database (scratch database, dropped afterwards)",
        )
        parser.add_argument(
            "--clients",
            type=int,
            default=1,
            help="--through-db: requests in flight at once (forked processes, one tenant each); 1 keeps the "
            "protocol's exact arrival order",
        )

    def handle(self, *args, nodes, pods, policy, model, seeds, out, limit, through_db, clients, **options):
        try:
            if through_db:
                self._through_db(nodes, pods, policy, model, seeds, out, limit, clients)
            else:
                replay.run(nodes, pods, policy=policy, model=model, seeds=seeds, out_path=out, limit=limit)
        except OSError as exc:
            raise CommandError(f"cannot read or write: {exc}") from None

    def _through_db(self, nodes, pods, policy, model, seeds, out, limit, clients):
        from allocations.placement.replay_db import run_through_db

        seed_list = replay.parse_seeds(seeds)
        if model != "vgpu":
            raise CommandError("--through-db replays the portal's own sharing model: add --model vgpu.")
        if clients < 1:
            raise CommandError("--clients must be at least 1.")
        if len(seed_list) != 1:
            raise CommandError(f"--through-db replays one seed (e.g. --seeds 42), not {len(seed_list)}.")
        if connection.vendor != "postgresql":
            self.stderr.write(
                f"note: the database is {connection.vendor}; the figures this project quotes are on PostgreSQL "
                "(DATABASE_URL=postgres://…)."
            )
        run_through_db(
            nodes,
            pods,
            policy=policy,
            seed=seed_list[0],
            limit=limit,
            out_path=out,
            clients=clients,
            stdout=self.stdout,
        )
