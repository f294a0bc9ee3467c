"""fleet.Registry: selection rules by example, and invariants under any sequence of events."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from jibri_operator.api.types import BreweryKind, BusyStatus, Dialect, Health, RecordingMode
from jibri_operator.fleet.registry import ModeCounts, Observation, Registry

ENV = "prod"


def jibri(
    nick: str,
    busy: BusyStatus = BusyStatus.IDLE,
    health: Health = Health.HEALTHY,
    dialect: Dialect = Dialect.CURRENT,
    env: str = ENV,
    present: bool = True,
    brewery: BreweryKind = BreweryKind.RECORDING,
) -> Observation:
    room = "sipbrewery" if brewery is BreweryKind.SIP else "brewery"
    return Observation(env, f"{room}@muc/{nick}", nick, busy, health, dialect, present, brewery)


def test_only_idle_healthy_present_jibris_are_chosen() -> None:
    registry = Registry()
    registry.observe(jibri("busy", BusyStatus.BUSY), 0)
    registry.observe(jibri("sick", health=Health.UNHEALTHY), 0)
    registry.observe(jibri("gone"), 0)
    registry.observe(jibri("gone", present=False), 0)
    registry.observe(jibri("other-env", env="staging"), 0)
    assert registry.select(ENV, RecordingMode.FILE, "s1", now=1) is None
    registry.observe(jibri("legacy", dialect=Dialect.LEGACY, health=Health.UNKNOWN), 1)
    chosen = registry.select(ENV, RecordingMode.FILE, "s1", now=1)
    assert chosen is not None and chosen.nickname == "legacy"


def test_legacy_jibris_cannot_do_sip() -> None:
    registry = Registry()
    registry.observe(jibri("legacy", dialect=Dialect.LEGACY), 0)
    assert registry.select(ENV, RecordingMode.SIP, "s1", now=0) is None
    assert registry.select(ENV, RecordingMode.STREAM, "s1", now=0) is not None


def test_sip_goes_only_to_the_sip_brewery_and_recordings_only_to_the_other() -> None:
    registry = Registry()
    registry.observe(jibri("recorder"), 0)
    registry.observe(jibri("gateway", brewery=BreweryKind.SIP), 0)
    sip = registry.select(ENV, RecordingMode.SIP, "s1", now=0)
    assert sip is not None and sip.nickname == "gateway"
    for mode in (RecordingMode.FILE, RecordingMode.STREAM):
        chosen = registry.select(ENV, mode, f"s-{mode}", now=0)
        assert chosen is not None and chosen.nickname == "recorder"
        registry.release(ENV, chosen.occupant, f"s-{mode}")


def test_a_pool_declares_what_its_pods_can_do() -> None:
    registry = Registry()
    registry.observe(jibri("pod-a"), 0)
    registry.declare_pod("pool/pod-a", "pod-a", [ENV], [RecordingMode.FILE])
    assert registry.select(ENV, RecordingMode.STREAM, "s1", now=0) is None
    assert registry.capable(ENV, RecordingMode.STREAM) == 0
    assert registry.select(ENV, RecordingMode.FILE, "s1", now=0) is not None
    registry.forget_pod("pool/pod-a")
    assert registry.capable(ENV, RecordingMode.STREAM) == 1


def test_a_refused_mode_is_learnt() -> None:
    registry = Registry()
    registry.observe(jibri("a"), 0)
    registry.observe(jibri("b", BusyStatus.BUSY), 0)
    registry.mark_unable(ENV, "brewery@muc/a", RecordingMode.STREAM)
    assert registry.select(ENV, RecordingMode.STREAM, "s1", now=0) is None
    assert registry.capable(ENV, RecordingMode.STREAM) == 1  # b could, once free
    assert registry.refusals(ENV) == {"a": frozenset({RecordingMode.STREAM})}
    counts = registry.mode_counts(ENV)
    assert counts[RecordingMode.STREAM] == ModeCounts(idle=0, busy=1, unable=1)
    assert counts[RecordingMode.FILE] == ModeCounts(idle=1, busy=1, unable=0)
    assert counts[RecordingMode.SIP] == ModeCounts(idle=0, busy=0, unable=2)  # no SIP brewery
    chosen = registry.select(ENV, RecordingMode.FILE, "s2", now=0)
    assert chosen is not None and chosen.nickname == "a"


def test_one_pod_in_two_environments_is_one_jibri() -> None:
    """Sessions of two deployments never race for the same pod, and its freedom wakes both."""
    registry = Registry()
    for env in (ENV, "staging"):
        registry.observe(jibri("pod-a", env=env), 0)
    registry.declare_pod("pool/pod-a", "pod-a", [ENV, "staging"])
    assert registry.select(ENV, RecordingMode.FILE, "s1", now=0) is not None
    assert registry.select("staging", RecordingMode.FILE, "s2", now=0) is None, "reserved in the other"
    registry.observe(jibri("pod-a", BusyStatus.BUSY, env=ENV), 1)
    assert registry.select("staging", RecordingMode.FILE, "s2", now=1) is None, "busy in the other"
    registry.observe(jibri("pod-a", BusyStatus.BUSY, env="staging"), 1)
    registry.observe(jibri("pod-a", env="staging"), 2)  # idle here first; still busy in prod
    assert registry.select("staging", RecordingMode.FILE, "s2", now=2) is None
    change = registry.observe(jibri("pod-a", env=ENV), 2)
    assert change.freed and change.also_freed == ("staging",)
    assert registry.select("staging", RecordingMode.FILE, "s2", now=2) is not None


def test_a_reservation_keeps_a_jibri_from_other_sessions_until_its_busy_presence() -> None:
    registry = Registry()
    registry.observe(jibri("a"), 0)
    assert registry.select(ENV, RecordingMode.FILE, "s1", now=0) is not None
    assert registry.select(ENV, RecordingMode.FILE, "s2", now=0.1) is None
    registry.observe(jibri("a", BusyStatus.BUSY), 0.2)
    registry.observe(jibri("a"), 5)  # the recording ended: free for anyone
    chosen = registry.select(ENV, RecordingMode.FILE, "s2", now=5)
    assert chosen is not None and chosen.nickname == "a"


def test_release_after_a_busy_answer_frees_the_jibri() -> None:
    registry = Registry()
    registry.observe(jibri("a"), 0)
    registry.select(ENV, RecordingMode.FILE, "s1", now=0)
    registry.release(ENV, "brewery@muc/a", "s1")
    assert registry.select(ENV, RecordingMode.FILE, "s2", now=0) is not None


def test_reservations_expire() -> None:
    registry = Registry(reservation_ttl=2)
    registry.observe(jibri("a"), 0)
    registry.select(ENV, RecordingMode.FILE, "s1", now=0)
    assert registry.next_deadline(0) == 2
    assert registry.select(ENV, RecordingMode.FILE, "s2", now=2.5) is not None


def test_recent_failures_are_skipped_until_a_new_idle_presence() -> None:
    registry = Registry(failure_backoff=60)
    registry.observe(jibri("a"), 0)
    registry.record_failure(ENV, "brewery@muc/a", now=1)
    assert registry.select(ENV, RecordingMode.FILE, "s1", now=2) is None
    change = registry.observe(jibri("a"), 3)  # a new idle presence clears the mark
    assert change.freed
    assert registry.select(ENV, RecordingMode.FILE, "s1", now=3) is not None


def test_prefers_the_oldest_failure_then_spreads_load() -> None:
    registry = Registry(failure_backoff=1)
    for nick in ("a", "b", "c"):
        registry.observe(jibri(nick), 0)
    registry.record_failure(ENV, "brewery@muc/a", now=10)
    registry.record_failure(ENV, "brewery@muc/b", now=5)
    first = registry.select(ENV, RecordingMode.FILE, "s1", now=20)
    assert first is not None and first.nickname == "c"  # never failed
    registry.release(ENV, first.occupant, "s1")
    second = registry.select(ENV, RecordingMode.FILE, "s2", now=21, exclude=[first.occupant])
    assert second is not None and second.nickname == "b"  # oldest failure
    registry.release(ENV, second.occupant, "s2")
    registry.record_failure(ENV, "brewery@muc/a", now=0)  # all equal again except pick history
    registry.record_failure(ENV, "brewery@muc/b", now=0)
    registry.record_failure(ENV, "brewery@muc/c", now=0)
    picks = []
    for index in range(3):
        chosen = registry.select(ENV, RecordingMode.FILE, f"t{index}", now=30 + index)
        assert chosen is not None
        registry.release(ENV, chosen.occupant, f"t{index}")
        picks.append(chosen.nickname)
    assert sorted(picks) == ["a", "b", "c"]  # least recently picked first: the load spreads


def test_two_controllers_order_equal_jibris_differently() -> None:
    """Both see the same 20 idle Jibris; reaching for the same one first would make one lose."""
    firsts = []
    for salt in ("jibri-operator-a", "jibri-operator-b"):
        registry = Registry(tie_salt=salt)
        for index in range(20):
            registry.observe(jibri(f"j{index:02d}"), 0)
        chosen = registry.select(ENV, RecordingMode.FILE, "s1", now=1)
        assert chosen is not None
        firsts.append(chosen.nickname)
    assert firsts[0] != firsts[1]


def test_counts() -> None:
    registry = Registry()
    registry.observe(jibri("a"), 0)
    registry.observe(jibri("b", BusyStatus.BUSY), 0)
    registry.observe(jibri("c", health=Health.UNHEALTHY), 0)
    counts = registry.counts(ENV)
    assert (counts.idle, counts.busy, counts.unhealthy, counts.total) == (1, 1, 1, 3)


# --- properties -------------------------------------------------------------------

NICKS = [f"j{i}" for i in range(6)]
SESSIONS = [f"s{i}" for i in range(4)]
observations = st.builds(
    jibri,
    st.sampled_from(NICKS),
    st.sampled_from(BusyStatus),
    st.sampled_from(Health),
    st.sampled_from(Dialect),
    st.sampled_from([ENV, "staging"]),
    st.booleans(),
    st.sampled_from(BreweryKind),
)


@given(st.lists(observations, max_size=30), st.sampled_from(RecordingMode), st.sets(st.sampled_from(NICKS)))
def test_select_agrees_with_available(
    events: list[Observation], mode: RecordingMode, excluded: set[str]
) -> None:
    registry = Registry()
    for index, observation in enumerate(events):
        registry.observe(observation, index)
    now = len(events)
    exclude = {f"brewery@muc/{nick}" for nick in excluded}
    chosen = registry.select(ENV, mode, "s", now, exclude=exclude)
    if chosen is None:
        assert all(
            o.occupant in exclude
            for o in registry.observations(ENV)
            if o.idle_and_healthy and registry.can_do(o, mode)
        )
    else:
        assert chosen.environment == ENV
        assert chosen.idle_and_healthy
        assert chosen.occupant not in exclude
        assert registry.can_do(chosen, mode)
        assert mode is not RecordingMode.SIP or (
            chosen.dialect is Dialect.CURRENT and chosen.brewery is BreweryKind.SIP
        )


@given(
    st.lists(
        st.builds(
            jibri,
            st.just("pod"),
            st.sampled_from(BusyStatus),
            st.sampled_from(Health),
            st.just(Dialect.CURRENT),
            st.sampled_from([ENV, "staging"]),
            st.booleans(),
        ),
        max_size=20,
    ),
    st.lists(st.tuples(st.sampled_from([ENV, "staging"]), st.sampled_from(SESSIONS)), max_size=6),
)
def test_a_shared_pod_is_never_chosen_while_taken_in_its_other_environment(
    events: list[Observation], picks: list[tuple[str, str]]
) -> None:
    registry = Registry()
    registry.declare_pod("pool/pod", "pod", [ENV, "staging"])
    for index, observation in enumerate(events):
        registry.observe(observation, index)
    holder: dict[str, str] = {}
    for env, session in picks:
        chosen = registry.select(env, RecordingMode.FILE, session, now=len(events))
        if chosen is None:
            continue
        other = registry.get_by_nickname("staging" if env == ENV else ENV, "pod")
        assert other is None or other.idle_and_healthy, "taken in the other environment"
        assert all(s == session for s in holder.values()), "another session holds it"
        holder[env] = session


class RegistryMachine(RuleBasedStateMachine):
    """Any interleaving of presences, selections, releases, failures and time."""

    def __init__(self) -> None:
        super().__init__()
        self.registry = Registry(failure_backoff=5, reservation_ttl=3)
        self.now = 0.0
        self.held: dict[str, tuple[str, float]] = {}  # occupant -> (session, reserved at)
        self.failed_at: dict[str, float] = {}

    @rule(observation=observations)
    def presence(self, observation: Observation) -> None:
        self.registry.observe(observation, self.now)
        if observation.environment == ENV and (
            not observation.present or observation.busy is BusyStatus.BUSY
        ):
            self.held.pop(observation.occupant, None)
        if observation.environment == ENV and observation.idle_and_healthy:
            self.failed_at.pop(observation.occupant, None)

    @rule(seconds=st.floats(min_value=0, max_value=4))
    def tick(self, seconds: float) -> None:
        self.now += seconds

    @rule(session=st.sampled_from(SESSIONS), mode=st.sampled_from(RecordingMode))
    def select(self, session: str, mode: RecordingMode) -> None:
        chosen = self.registry.select(ENV, mode, session, self.now)
        if chosen is None:
            return
        assert chosen.idle_and_healthy
        holder = self.held.get(chosen.occupant)
        if holder is not None and self.now < holder[1] + 3:
            assert holder[0] == session, "a live reservation of another session was ignored"
        failed = self.failed_at.get(chosen.occupant)
        assert failed is None or self.now >= failed + 5, "a Jibri that failed recently was chosen"
        self.held[chosen.occupant] = (session, self.now)

    @precondition(lambda self: bool(self.held))
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        occupant = data.draw(st.sampled_from(sorted(self.held)))
        session, _ = self.held.pop(occupant)
        self.registry.release(ENV, occupant, session)

    @rule(nick=st.sampled_from(NICKS))
    def fail(self, nick: str) -> None:
        occupant = f"brewery@muc/{nick}"
        if self.registry.get(ENV, occupant) is not None:
            self.registry.record_failure(ENV, occupant, self.now)
            self.failed_at[occupant] = self.now

    @invariant()
    def counts_add_up(self) -> None:
        counts = self.registry.counts(ENV)
        assert counts.total == sum(1 for _ in self.registry.observations(ENV))
        assert 0 <= self.registry.available(ENV, RecordingMode.FILE, self.now) <= counts.idle


RegistryMachine.TestCase.settings = settings(max_examples=200, stateful_step_count=40, deadline=None)
TestRegistryMachine = RegistryMachine.TestCase
