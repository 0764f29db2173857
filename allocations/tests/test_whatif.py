"""The capacity what-if (issue 16): the replay on fleets and demands whose answer is known by hand, its
determinism, the database's demand and fleet, the page and the API, and who may use them."""

from __future__ import annotations

import random
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from allocations.choices import DesktopStatus
from allocations.models import Desktop
from allocations.placement import engine, whatif
from allocations.placement.engine import Ladder, ProfileSpec
from allocations.placement.whatif import Arrival, HostShape, Scenario, replay
from allocations.tests.factories import make_template
from inventory.choices import GPUMode, HostState
from inventory.models import VGPUProfile
from inventory.tests.factories import make_gpu, make_host, make_profile

HOUR = 3600.0
A40 = {"A40": Ladder("A40", 49152, [ProfileSpec(8, "A40-8Q", 8192, 6), ProfileSpec(24, "A40-24Q", 24576, 2)])}
CAD = engine.Request(4000, 8192, 1, 166, frozenset({"A40"}), "Q", 8192, 8)  # one A40-8Q: 6 to a board


def a40_host(name: str, boards: int, *, cores: int = 64) -> HostShape:
    return HostShape(name, cores, 512 * 1024, (("A40", "vgpu"),) * boards)


def concurrent(n: int, *, at: float = 0.0, hours: float = 1.0) -> list[Arrival]:
    return [Arrival(at, "CAD", CAD, hours * HOUR) for _ in range(n)]


# -- the replay, by hand ----------------------------------------------------------------------------


def test_two_boards_of_six_refuse_two_of_fourteen_concurrent_requests():
    out = replay([a40_host("h1", 2)], concurrent(14), A40)
    assert (out.requests, out.placed, out.refused) == (14, 12, 2)
    assert out.by_template == {"CAD": {"requests": 14, "refused": 2}}
    assert out.gpu_hours == pytest.approx(12 * 8192 / 49152)  # 12 desktops × 1/6 board × 1 h
    assert out.stranded_mean == 0 and out.stranded_peak == 0  # every instance is taken
    assert out.as_dict()["refused_pct"] == 14.3


def test_adding_a_board_refuses_none_and_draining_refuses_more():
    demand = concurrent(14)
    assert replay([a40_host("h1", 2), a40_host("h2", 1)], demand, A40).refused == 0
    drained = replay([a40_host("h1", 2), a40_host("h2", 1)][1:], demand, A40)
    assert drained.refused == 8 and drained.placed == 6
    assert replay([], demand, A40).refused == 14


def test_a_desktop_that_left_frees_its_instance_for_the_next_arrival():
    demand = concurrent(12) + concurrent(12, at=HOUR)  # the first twelve leave at 1 h, as the next arrive
    out = replay([a40_host("h1", 2)], demand, A40)
    assert out.refused == 0
    assert out.gpu_hours == pytest.approx(24 / 6)


def test_stranded_capacity_is_free_gpu_capacity_no_offered_template_can_use():
    """A 4-vCPU host: one 4-vCPU desktop leaves 5 of 6 A40-8Q instances and the other board unusable
    (1 5/6 GPUs) for its hour, then nothing; over a 2-hour window the mean is half that."""
    out = replay([a40_host("h1", 2, cores=4)], concurrent(1), A40, horizon_s=2 * HOUR)
    assert out.stranded_peak == pytest.approx(1 + 5 / 6, abs=1e-3)  # the engine counts in milli-GPU
    assert out.stranded_mean == pytest.approx((1 + 5 / 6) / 2, abs=1e-3)
    # a board no template allows is stranded all the time
    lonely = HostShape("h2", 64, 512 * 1024, (("L40S", "vgpu"),))
    out = replay([a40_host("h1", 2), lonely], concurrent(3), A40, horizon_s=HOUR)
    assert out.stranded_mean == pytest.approx(1.0) and out.refused == 0


def test_gpu_hours_stop_at_the_end_of_the_window():
    out = replay([a40_host("h1", 1)], concurrent(6, hours=10), A40, horizon_s=2 * HOUR)
    assert out.gpu_hours == pytest.approx(6 * 2 / 6)


def test_empty_demand_refuses_nothing_and_serves_nothing():
    out = replay([a40_host("h1", 2)], [], A40, offered=[CAD], horizon_s=30 * 86400)
    assert out.as_dict() == {
        "hosts": 1,
        "gpus": 2,
        "requests": 0,
        "placed": 0,
        "refused": 0,
        "refused_pct": 0.0,
        "gpu_hours_served": 0.0,
        "stranded_gpus_mean": 0.0,
        "stranded_gpus_peak": 0.0,
        "by_template": {},
    }


def _random_demand(n: int, seed: int = 7) -> list[Arrival]:
    rng = random.Random(seed)
    shapes = {
        "CAD": CAD,
        "Big": engine.Request(8000, 32768, 1, 500, frozenset({"A40"}), "Q", 24576, 24),
        "Whole": engine.Request(16000, 65536, 2, 1000, frozenset({"A40"})),
        "CPU": engine.Request(2000, 4096),
    }
    names = rng.choices(list(shapes), weights=[6, 2, 1, 1], k=n)
    return [Arrival(rng.uniform(0, 30 * 86400), t, shapes[t], rng.uniform(1, 48) * HOUR) for t in names]


@pytest.mark.parametrize("policy", sorted(engine.POLICIES))
def test_replays_are_deterministic(policy):
    hosts = [a40_host(f"h{i}", 4) for i in range(4)]
    demand = _random_demand(600)
    first = replay(hosts, demand, A40, policy=policy, seed=3, horizon_s=30 * 86400).as_dict()
    assert replay(hosts, demand, A40, policy=policy, seed=3, horizon_s=30 * 86400).as_dict() == first
    assert first["requests"] == 600 and first["refused"] > 0  # a demand that fills the fleet


def test_three_thousand_requests_on_ten_hosts_replay_in_well_under_ten_seconds():
    hosts = [a40_host(f"h{i}", 4) for i in range(10)]
    demand = _random_demand(3000)
    started = time.perf_counter()
    out = replay(hosts, demand, A40, horizon_s=30 * 86400)
    assert out.requests == 3000
    assert time.perf_counter() - started < 5  # 0.2 s on the 2-core development machine


# -- the database's fleet and demand ----------------------------------------------------------------


@pytest.fixture
def fleet(db):
    """lab-a: 2 A40 boards in vGPU mode; lab-b: 1 A40; lab-off: offline; catalog A40-8Q (6 to a board)."""
    make_profile("A40-8Q")
    a, b = make_host("lab-a"), make_host("lab-b")
    make_gpu(a, "0000:41:00.0")
    make_gpu(a, "0000:42:00.0")
    make_gpu(b, "0000:41:00.0")
    make_gpu(b, "0000:43:00.0", mode=GPUMode.DISABLED)  # not usable: not in the fleet
    off = make_host("lab-off", state=HostState.OFFLINE)
    make_gpu(off, "0000:41:00.0", model="L40S")
    return a, b


@pytest.fixture
def cad(fleet, tenant):
    return make_template("CAD", profile=VGPUProfile.objects.get(name="A40-8Q"), tenants=[tenant])


def desktops(template, owner, tenant, n: int, *, ago: timedelta, hours: float = 8, ran: bool = True) -> None:
    requested = timezone.now() - ago
    for k in range(n):
        d = Desktop.objects.create(
            name=f"d{k}",
            tenant=tenant,
            owner=owner,
            template=template,
            profile=template.profile,
            vcpus=template.vcpus,
            memory_mib=template.memory_mib,
            framebuffer_mib=8192,
            duration_hours=int(hours),
            status=DesktopStatus.RELEASED,
            holds_capacity=False,
        )
        started = requested + timedelta(minutes=2)
        ended = started + timedelta(hours=hours) if ran else None
        Desktop.objects.filter(pk=d.pk).update(
            requested_at=requested, started_at=started if ran else None, ended_at=ended
        )


@pytest.fixture
def history(cad, tenant_member, tenant):
    """Fourteen CAD desktops at once a day ago (8 h each), and one from 40 days ago (outside the window)."""
    desktops(cad, tenant_member, tenant, 14, ago=timedelta(days=1))
    desktops(cad, tenant_member, tenant, 1, ago=timedelta(days=40))


def test_the_fleet_is_the_online_hosts_and_their_usable_gpus(fleet):
    assert whatif.current_fleet() == [
        HostShape("lab-a", 64, 262144, (("A40", "vgpu"), ("A40", "vgpu"))),
        HostShape("lab-b", 64, 262144, (("A40", "vgpu"),)),
    ]


def test_history_is_the_windows_desktops_for_as_long_as_they_ran(history):
    demand = whatif.history_demand(30, 1, seed=0, vcpu_milli=1000)
    assert len(demand) == 14
    assert {a.duration_s for a in demand} == {8 * HOUR}
    assert {a.template for a in demand} == {"CAD"}
    assert len(whatif.history_demand(30, 2, seed=0, vcpu_milli=1000)) == 28
    assert len(whatif.history_demand(60, 1, seed=0, vcpu_milli=1000)) == 15


def test_drain_and_add_on_the_database_fleet(history):
    base = whatif.run_whatif(Scenario(drain=("lab-b",)))
    assert (base["before"]["refused"], base["after"]["refused"]) == (0, 2)  # 3 boards, then 2: 12 of 14
    assert base["summary"].startswith("Replaying the last 30 days' 14 requests: Draining lab-b would refuse 2 of 14")
    assert base["templates"] == [{"template": "CAD", "requests": 14, "refused_before": 0, "refused_after": 2}]
    both = whatif.run_whatif(Scenario(drain=("lab-a", "lab-b"), add_new=(("A40", 1, 1),)))
    assert both["after"]["refused"] == 8 and both["after"]["gpus"] == 1
    twice = whatif.run_whatif(Scenario(add_like=(("lab-a", 1),), scale=2))
    assert twice["before"]["requests"] == 28
    assert (twice["before"]["refused"], twice["after"]["refused"]) == (10, 0)  # 18 then 30 instances
    assert twice["after"]["hosts"] == 3
    assert whatif.run_whatif(Scenario(drain=("lab-b",))) | {"elapsed_s": 0} == base | {"elapsed_s": 0}


def test_a_chosen_mix_replaces_the_history(cad):
    result = whatif.run_whatif(Scenario(mix=(("CAD", 40, 24.0),), days=1))
    assert result["before"]["requests"] == 40
    assert result["scenario"]["source"] == "mix"
    assert result["before"]["refused"] >= 40 - 18  # at most 18 instances, each held for the whole day


def test_no_demand_is_said_in_words(fleet):
    result = whatif.run_whatif(Scenario())
    assert result["before"]["requests"] == 0
    assert result["summary"] == "There is no demand to replay: the last 30 days' 0 requests."


# -- the API ----------------------------------------------------------------------------------------

URL = "/api/capacity/what-if/"


def test_api_answers_before_and_after_as_json(api, platform_admin, history):
    response = api.as_user(platform_admin).post(URL, {"drain": ["lab-b"], "demand": {"days": 30}}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["before"]["refused"] == 0 and body["after"]["refused"] == 2
    assert body["after"]["refused_pct"] == 14.3
    assert "Draining lab-b would refuse 2 of 14 requests (14.3%) instead of 0 (0.0%)" in body["summary"]


@pytest.mark.parametrize(
    "payload,words",
    [
        ({"drain": ["nope"]}, "No online host named nope"),
        ({"drain": ["lab-off"]}, "No online host named lab-off"),
        ({"drain": "lab-a"}, "drain must be a list"),
        ({"add": [{"like": "ghost"}]}, "No host named ghost"),
        ({"add": [{"gpu_model": "H100"}]}, "H100 is not a board of the vGPU catalog"),
        ({"add": [{"gpu_model": "A40", "count": 0}]}, "from 1 to 50"),
        ({"add": [{"gpu_model": "A40", "gpus": "many"}]}, "GPUs per new host"),
        ({"add": [{}]}, "names an existing host"),
        ({"demand": {"scale": "abc"}}, "The scale factor"),
        ({"demand": {"scale": 0}}, "The scale factor"),
        ({"demand": {"days": 1000}}, "from 1 to 90"),
        ({"demand": {"mix": [{"template": "Nope", "count": 3}]}}, "No template named Nope"),
        ({"policy": "magic"}, "Unknown placement policy"),
        ({"hosts": []}, "Unknown field(s): hosts"),
        (["lab-a"], "Send a JSON object"),
    ],
)
def test_api_bad_input_is_400_in_words(api, platform_admin, cad, payload, words):
    response = api.as_user(platform_admin).post(URL, payload, format="json")
    assert response.status_code == 400, response.content
    assert words in response.json()["error"]["message"]


@pytest.mark.parametrize("persona,status", [("auditor", 403), ("tenant_member", 403), ("outsider", 403), (None, 401)])
def test_api_is_for_platform_admins_only(api, personas, fleet, persona, status):
    response = api.as_user(personas.get(persona)).post(URL, {}, format="json")
    assert response.status_code == status
    assert "before" not in response.json()


def test_api_get_is_405(api, platform_admin):
    assert api.as_user(platform_admin).get(URL).status_code == 405


# -- the page ---------------------------------------------------------------------------------------

PAGE = "/capacity/what-if/"


def test_page_runs_a_what_if_and_says_it_in_words(client, platform_admin, history):
    client.force_login(platform_admin)
    page = client.get(PAGE)
    assert page.status_code == 200
    assert b'name="drain" value="lab-a"' in page.content and b"lab-off" in page.content  # off: copyable only
    assert b'href="/capacity/what-if/"' in page.content  # the nav link
    response = client.post(PAGE, {"drain": ["lab-b"], "days": "30", "scale": "1", "like_count": "1"})
    assert response.status_code == 200
    text = response.content.decode()
    assert "Draining lab-b would refuse 2 of 14 requests (14.3%) instead of 0 (0.0%)" in text
    assert "<td>CAD</td><td>14</td><td>0</td><td>2</td>" in text
    assert 'value="lab-b" checked' in text  # the form keeps what was asked


def test_page_bad_input_is_400_in_words_and_keeps_the_form(client, platform_admin, fleet):
    client.force_login(platform_admin)
    response = client.post(PAGE, {"gpu_model": "A40", "gpus": "99", "days": "30", "scale": "1"})
    assert response.status_code == 400
    assert "GPUs per new host must be a whole number from 1 to 16." in response.content.decode()
    assert b'name="gpus" min="1" max="16" value="99"' in response.content


@pytest.mark.parametrize("persona", ["auditor", "tenant_member", "outsider"])
def test_page_is_for_platform_admins_only(client, personas, fleet, persona):
    client.force_login(personas[persona])
    assert client.get(PAGE).status_code == 403
    assert client.post(PAGE, {"days": "30"}).status_code == 403
    assert b'href="/capacity/what-if/"' not in client.get("/").content


def test_page_sends_anonymous_people_to_sign_in(client, db):
    response = client.get(PAGE)
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]
