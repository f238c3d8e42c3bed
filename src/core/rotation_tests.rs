//! The rotation plan over simulated days, with restarts at every step.
//!
//! A [`World`] is the planner's whole environment as `live` gives it: the persisted records,
//! a counter standing in for thumbprint kids, and a fake clock in Unix seconds. Each tick plans
//! and carries the plan out the way `Managed::apply` does, and the tests check what an operator
//! or a relying party would notice: who signs, what verifies, what is published when.

use super::*;
use crate::core::keys::KeyId;

const MINUTE: u64 = 60;
const HOUR: u64 = 3600;
const DAY: u64 = 86_400;
/// An arbitrary start, far from zero so no time saturates.
const START: u64 = 1_700_000_000;
/// The seed of every simulated run; any value gives a reproducible run.
const SEED: u64 = 0x5eed_0f70_7075;

fn spec(rotate_every: u64, publish_ahead: u64, verify_after: u64) -> RotationSpec {
    RotationSpec {
        algorithm: Algorithm::ES256,
        rotate_every,
        publish_ahead,
        verify_after,
    }
}

/// Hourly keys published 65 minutes ahead (max_ttl 1h + JWKS cache 5m), verifying 1h after.
fn hourly() -> RotationSpec {
    spec(HOUR, 5 * MINUTE + HOUR, HOUR)
}

/// Hourly keys published 10 minutes ahead, so at most one successor waits at a time.
fn hourly_short_notice() -> RotationSpec {
    spec(HOUR, 10 * MINUTE, HOUR)
}

/// xorshift64*: a deterministic source of step lengths, so a failing run replays exactly.
struct Steps(u64);

impl Steps {
    /// A step of 1..=max seconds.
    fn next(&mut self, max: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        1 + self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % max
    }
}

/// One managed profile as the planner sees it, carried out the way `live` carries it out.
#[derive(Clone, Debug)]
struct World {
    spec: RotationSpec,
    records: Vec<KeyRecord>,
    /// Kids handed out so far; a new key is "k1", "k2", … instead of a thumbprint.
    minted: u64,
}

impl World {
    fn new(spec: RotationSpec) -> World {
        World {
            spec,
            records: Vec::new(),
            minted: 0,
        }
    }

    /// Plans at `now` and applies the plan.
    fn step(&mut self, now: u64) -> Plan {
        let plan = plan(&self.spec, &self.records, now);
        self.apply(&plan);
        plan
    }

    /// What `Managed::apply` does with a plan: kept records plus created ones under fresh kids,
    /// in activation order; dropped records are forgotten.
    fn apply(&mut self, plan: &Plan) {
        let mut records = plan.keep.clone();
        for times in &plan.create {
            self.minted += 1;
            records.push(KeyRecord {
                kid: KeyId::parse(&format!("k{}", self.minted)).unwrap(),
                algorithm: self.spec.algorithm,
                times: *times,
            });
        }
        records.sort_by_key(|r| (r.times.activate_at, r.times.retire_at));
        self.records = records;
    }

    /// A restart: the records go to JSON, as into state.json, and are read back.
    fn restart(&mut self) {
        let json = serde_json::to_string(&self.records).unwrap();
        self.records = serde_json::from_str(&json).unwrap();
    }

    fn record(&self, kid: &str) -> Option<&KeyRecord> {
        self.records.iter().find(|r| r.kid == kid)
    }

    /// The one key that signs at `t`.
    fn signer_at(&self, t: u64) -> &KeyRecord {
        let active = active_at(&self.records, t);
        assert_eq!(active.len(), 1, "keys signing at {t}: {active:?}");
        active[0]
    }
}

fn active_at(records: &[KeyRecord], t: u64) -> Vec<&KeyRecord> {
    records
        .iter()
        .filter(|r| r.times.state_at(t) == KeyState::Active)
        .collect()
}

fn kids(records: &[KeyRecord]) -> Vec<&str> {
    records.iter().map(|r| r.kid.as_str()).collect()
}

/// One wake-up of the simulated service: the records it woke to, its plan, the records after.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Tick {
    now: u64,
    before: Vec<KeyRecord>,
    plan: Plan,
    after: Vec<KeyRecord>,
}

/// Runs `world` from `START` for `days`, waking after 1..=max_step seconds each time, with a
/// restart before every wake-up if `restarts`.
fn simulate(mut world: World, days: u64, max_step: u64, restarts: bool) -> Vec<Tick> {
    let mut steps = Steps(SEED);
    let mut ticks = Vec::new();
    let mut now = START;
    while now < START + days * DAY {
        if restarts {
            world.restart();
        }
        let before = world.records.clone();
        let plan = world.step(now);
        ticks.push(Tick {
            now,
            before,
            plan,
            after: world.records.clone(),
        });
        now += steps.next(max_step);
    }
    ticks
}

/// Three days of hourly keys, the service waking every 1 to 600 seconds.
fn three_hourly_days() -> Vec<Tick> {
    simulate(World::new(hourly()), 3, 600, false)
}

/// Every instant from `from` to `to` at which the state of some record can change, plus `from`:
/// checking these checks every instant in between.
fn instants(records: &[KeyRecord], from: u64, to: u64) -> Vec<u64> {
    let mut out: Vec<u64> = records
        .iter()
        .flat_map(|r| [r.times.activate_at, r.times.retire_at, r.times.remove_at])
        .filter(|&t| from < t && t <= to)
        .collect();
    out.push(from);
    out.sort_unstable();
    out.dedup();
    out
}

fn assert_one_signer_at_every_instant(ticks: &[Tick]) {
    for (i, tick) in ticks.iter().enumerate() {
        // Until the next wake-up the service signs with what this one left behind.
        let until = ticks.get(i + 1).map_or(tick.now, |next| next.now);
        for t in instants(&tick.after, tick.now, until) {
            let active = active_at(&tick.after, t);
            assert_eq!(active.len(), 1, "at {t} (tick at {}): {active:?}", tick.now);
        }
    }
}

/// Every key is published `publish_ahead` before it signs, except the first start's keys: the
/// first signs at once, and the successors published with it could not have been published
/// any earlier, since no relying party can hold a key set from before the first start.
fn assert_published_ahead_except_the_first_start(ticks: &[Tick], spec: &RotationSpec) {
    let first_start = &ticks[0];
    assert_eq!(first_start.now, START);
    let first = first_start.plan.create[0];
    assert_eq!(
        (first.publish_at, first.activate_at),
        (START, START),
        "the very first key signs at once"
    );
    for tick in ticks {
        for record in &tick.after {
            let t = record.times;
            assert!(t.publish_at <= tick.now, "{record:?} is in the state early");
            if let Some(earlier) = tick.before.iter().find(|r| r.kid == record.kid) {
                assert_eq!(
                    (earlier.times.publish_at, earlier.times.activate_at),
                    (t.publish_at, t.activate_at),
                    "a key's publication and activation never move"
                );
                continue;
            }
            assert_eq!(
                t.publish_at, tick.now,
                "{record:?} is published when created"
            );
            if tick.now != START {
                assert!(
                    t.activate_at >= t.publish_at + spec.publish_ahead,
                    "{record:?} signs only {}s after it was published",
                    t.activate_at - t.publish_at
                );
            }
        }
    }
}

/// A token a relying party holds: the key that signed it, when, and when it expires.
#[derive(Debug)]
struct Token {
    kid: KeyId,
    signed_at: u64,
    exp: u64,
}

fn assert_every_token_verifies_until_it_expires(ticks: &[Tick], max_ttl: u64) {
    let mut tokens: Vec<Token> = Vec::new();
    for (i, tick) in ticks.iter().enumerate() {
        tokens.retain(|token| token.exp > tick.now);
        for token in &tokens {
            let key = tick.after.iter().find(|r| r.kid == token.kid);
            let key = key.unwrap_or_else(|| panic!("{token:?} lost its key at {}", tick.now));
            // Between wake-ups the records stand still, so this covers every instant up to exp.
            assert!(
                key.times.publish_at <= token.signed_at && token.exp <= key.times.remove_at,
                "{token:?} is refused before it expires by {key:?}"
            );
        }
        // Sign at the wake-up and at the last second before the next one, the worst case.
        let last = ticks.get(i + 1).map_or(tick.now, |next| next.now - 1);
        for signed_at in [tick.now, last] {
            let signer = active_at(&tick.after, signed_at);
            tokens.push(Token {
                kid: signer[0].kid.clone(),
                signed_at,
                exp: signed_at + max_ttl,
            });
        }
    }
}

/// At most one signing key, the keys published ahead, and the retired keys still verifying;
/// each group can hold one key more than a whole number of periods.
fn key_bound(spec: &RotationSpec) -> usize {
    let periods = |secs: u64| secs.div_ceil(spec.rotate_every) as usize + 1;
    1 + periods(spec.publish_ahead) + periods(spec.verify_after)
}

fn assert_removed_keys_are_dropped_and_few_are_kept(ticks: &[Tick], spec: &RotationSpec) {
    for tick in ticks {
        for dropped in &tick.plan.drop {
            assert!(
                dropped.times.remove_at <= tick.now,
                "at {} a key that could still verify tokens was dropped: {dropped:?}",
                tick.now
            );
        }
        for kept in &tick.after {
            assert_ne!(kept.times.state_at(tick.now), KeyState::Removed, "{kept:?}");
        }
        let removed_since = tick
            .before
            .iter()
            .filter(|r| r.times.remove_at <= tick.now)
            .count();
        assert_eq!(tick.plan.drop.len(), removed_since, "at {}", tick.now);
        assert!(
            tick.after.len() <= key_bound(spec),
            "{} keys kept at {}: {:?}",
            tick.after.len(),
            tick.now,
            kids(&tick.after)
        );
    }
}

fn assert_successors_are_always_known_publish_ahead(ticks: &[Tick], spec: &RotationSpec) {
    for tick in ticks {
        let known_until = tick.after.iter().map(|r| r.times.retire_at).max().unwrap();
        assert!(
            known_until > tick.now + spec.publish_ahead,
            "at {} the signers are known only until {known_until}",
            tick.now
        );
    }
}

#[test]
fn exactly_one_key_signs_at_every_instant_over_three_days() {
    let ticks = three_hourly_days();

    assert_one_signer_at_every_instant(&ticks);
}

#[test]
fn every_key_after_the_first_start_is_published_publish_ahead_before_it_signs() {
    let ticks = three_hourly_days();

    assert_published_ahead_except_the_first_start(&ticks, &hourly());
    assert_successors_are_always_known_publish_ahead(&ticks, &hourly());
}

#[test]
fn every_token_signed_at_any_instant_verifies_until_it_expires() {
    let spec = hourly();

    let ticks = three_hourly_days();

    // verify_after is max_ttl + leeway; with no leeway it is the longest token lifetime.
    assert_every_token_verifies_until_it_expires(&ticks, spec.verify_after);
}

#[test]
fn removed_keys_are_dropped_and_the_number_of_kept_keys_stays_bounded() {
    let spec = hourly();

    let ticks = three_hourly_days();

    assert_removed_keys_are_dropped_and_few_are_kept(&ticks, &spec);
    // A late wake-up lets a key sign up to one step longer, so a period is at most 70 minutes.
    let created: usize = ticks.iter().map(|t| t.plan.create.len()).sum();
    assert!(
        created as u64 >= 3 * DAY / (HOUR + 600),
        "three days of hourly keys, only {created} created"
    );
}

#[test]
fn a_restart_before_every_tick_changes_nothing() {
    let without = simulate(World::new(hourly()), 3, 600, false);

    let with = simulate(World::new(hourly()), 3, 600, true);

    assert_eq!(with.len(), without.len());
    for (a, b) in with.iter().zip(&without) {
        assert_eq!(a, b, "the runs part at {}", a.now);
    }
}

#[test]
fn planning_again_at_the_same_instant_changes_nothing() {
    let spec = hourly();

    let ticks = three_hourly_days();

    for tick in &ticks {
        let again = plan(&spec, &tick.after, tick.now);
        assert!(again.is_noop(&tick.after), "at {}: {again:?}", tick.now);
        assert_eq!(again.next_at, tick.plan.next_at);
    }
}

#[test]
fn nothing_changes_before_the_plan_says_to_look_again() {
    let spec = hourly();

    let ticks = three_hourly_days();

    for tick in &ticks {
        assert!(tick.plan.next_at > tick.now, "{:?}", tick.plan);
        let just_before = tick.plan.next_at - 1;
        let early = plan(&spec, &tick.after, just_before);
        assert!(
            early.is_noop(&tick.after),
            "next_at {} but at {just_before}: {early:?}",
            tick.plan.next_at
        );
    }
}

#[test]
fn publish_ahead_of_several_periods_keeps_several_keys_published_and_all_promises() {
    // Ten-minute keys published 35 minutes ahead: three or four successors wait at a time.
    let spec = spec(10 * MINUTE, 35 * MINUTE, 15 * MINUTE);

    let ticks = simulate(World::new(spec.clone()), 2, 600, false);

    assert_eq!(
        ticks[0].plan.create.len(),
        4,
        "the first start publishes the keys for the next 35 minutes: {:?}",
        ticks[0].plan.create
    );
    assert_one_signer_at_every_instant(&ticks);
    assert_published_ahead_except_the_first_start(&ticks, &spec);
    assert_successors_are_always_known_publish_ahead(&ticks, &spec);
    assert_every_token_verifies_until_it_expires(&ticks, spec.verify_after);
    assert_removed_keys_are_dropped_and_few_are_kept(&ticks, &spec);
    let most_waiting = ticks
        .iter()
        .map(|t| {
            t.after
                .iter()
                .filter(|r| r.times.state_at(t.now) == KeyState::Published)
                .count()
        })
        .max()
        .unwrap();
    assert!(most_waiting >= 3, "at most {most_waiting} keys waited");
}

#[test]
fn back_after_days_down_a_new_key_signs_at_once_and_keys_past_their_removal_are_dropped() {
    // Daily keys verifying two days after they retire, so some outlive a three-day stop.
    let mut world = World::new(spec(DAY, HOUR, 2 * DAY));
    let mut now = START;
    while now < START + 5 * DAY {
        world.step(now);
        now += 10 * MINUTE;
    }
    let stopped_at = now - 10 * MINUTE;
    let back_at = stopped_at + 3 * DAY;
    let (gone, alive): (Vec<KeyRecord>, Vec<KeyRecord>) = world
        .records
        .iter()
        .cloned()
        .partition(|r| r.times.remove_at <= back_at);
    assert!(!gone.is_empty() && !alive.is_empty(), "{:?}", world.records);
    assert!(
        active_at(&world.records, back_at).is_empty(),
        "no key signs after the stop"
    );

    let plan = world.step(back_at);

    assert_eq!(kids(&plan.drop), kids(&gone));
    assert_eq!(kids(&plan.keep), kids(&alive));
    for kept in &plan.keep {
        assert_eq!(kept.times.state_at(back_at), KeyState::Retired, "{kept:?}");
    }
    let first = plan.create[0];
    assert_eq!((first.publish_at, first.activate_at), (back_at, back_at));
    let signer = world.signer_at(back_at);
    assert!(
        !alive.iter().any(|r| r.kid == signer.kid),
        "a new key signs"
    );
}

#[test]
fn back_after_days_down_with_short_verify_after_every_old_key_is_dropped() {
    let mut world = World::new(hourly());
    let mut now = START;
    while now < START + DAY {
        world.step(now);
        now += 5 * MINUTE;
    }
    let old = world.records.clone();
    let back_at = now + 3 * DAY;

    let plan = world.step(back_at);

    assert!(plan.keep.is_empty(), "{:?}", plan.keep);
    assert_eq!(kids(&plan.drop), kids(&old));
    let signer = world.signer_at(back_at);
    assert_eq!(signer.times.activate_at, back_at);
    assert!(!old.iter().any(|r| r.kid == signer.kid), "a new key signs");
}

#[test]
fn a_late_tick_lets_the_active_key_sign_longer_so_its_successor_is_still_published_ahead() {
    let spec = hourly_short_notice();
    let mut world = World::new(spec.clone());
    world.step(START);
    let first = world.records[0].clone();
    assert_eq!(first.times.retire_at, START + HOUR);
    // The successor is due at START + 50m; the service wakes five minutes late.
    let late = START + 55 * MINUTE;

    let plan = world.step(late);

    assert_eq!(kids(&plan.keep), ["k1"]);
    let extended = plan.keep[0].times;
    assert_eq!(extended.retire_at, late + spec.publish_ahead);
    assert_eq!(extended.remove_at, extended.retire_at + spec.verify_after);
    let successor = plan.create[0];
    assert_eq!(successor.publish_at, late);
    assert_eq!(successor.activate_at, late + spec.publish_ahead);
    assert_eq!(world.signer_at(first.times.retire_at).kid, "k1");
    assert_eq!(world.signer_at(successor.activate_at).kid, "k2");
}

#[test]
fn a_new_algorithm_drops_pending_keys_of_the_old_one_and_the_successor_uses_the_new_one() {
    let mut world = World::new(hourly_short_notice());
    world.step(START);
    world.step(START + 50 * MINUTE);
    assert_eq!(kids(&world.records), ["k1", "k2"], "the successor waits");
    world.spec.algorithm = Algorithm::EdDSA;
    let now = START + 51 * MINUTE;

    let plan = world.step(now);

    assert_eq!(
        kids(&plan.drop),
        ["k2"],
        "the waiting ES256 key never signed"
    );
    assert_eq!(kids(&plan.keep), ["k1"]);
    assert_eq!(plan.keep[0].algorithm, Algorithm::ES256);
    // The replacement needs its own publish_ahead, so the active key signs a minute longer
    // than planned rather than hand over to a key no relying party has fetched yet.
    assert_eq!(plan.keep[0].times.retire_at, now + 10 * MINUTE);
    let successor = world.record("k3").unwrap();
    assert_eq!(successor.algorithm, Algorithm::EdDSA);
    assert_eq!(successor.times.publish_at, now);
    assert_eq!(successor.times.activate_at, plan.keep[0].times.retire_at);
    assert_eq!(world.signer_at(START + HOUR).kid, "k1");
    assert_eq!(world.signer_at(now + 10 * MINUTE).kid, "k3");
}

#[test]
fn a_new_algorithm_before_any_successor_waits_leaves_the_active_key_signing_to_its_retire_at() {
    let mut world = World::new(hourly_short_notice());
    world.step(START);
    world.spec.algorithm = Algorithm::EdDSA;
    let before = world.records.clone();

    let meanwhile = plan(&world.spec, &world.records, START + 30 * MINUTE);
    world.step(START + 50 * MINUTE);

    assert!(
        meanwhile.is_noop(&before),
        "the active ES256 key stays as it is: {meanwhile:?}"
    );
    assert_eq!(world.records[0].times, before[0].times);
    let successor = world.record("k2").unwrap();
    assert_eq!(successor.algorithm, Algorithm::EdDSA);
    assert_eq!(successor.times.activate_at, START + HOUR);
    assert_eq!(
        world.signer_at(START + HOUR - 1).algorithm,
        Algorithm::ES256
    );
    assert_eq!(world.signer_at(START + HOUR).algorithm, Algorithm::EdDSA);
}

#[test]
fn a_longer_verify_after_makes_kept_keys_verify_longer_and_a_shorter_one_never_shortens_them() {
    let mut world = World::new(hourly());
    let mut now = START;
    while now < START + 6 * HOUR {
        world.step(now);
        now += 5 * MINUTE;
    }
    // A minute past the last tick, when nothing is due to be created or removed.
    let now = now - 4 * MINUTE;
    let before = world.records.clone();

    world.spec.verify_after = 3 * HOUR;
    let longer = world.step(now);
    world.spec.verify_after = 30 * MINUTE;
    let shorter = world.step(now + 1);

    assert!(
        longer.create.is_empty() && longer.drop.is_empty(),
        "{longer:?}"
    );
    for (old, new) in before.iter().zip(&longer.keep) {
        assert_eq!(old.kid, new.kid);
        assert_eq!(new.times.remove_at, new.times.retire_at + 3 * HOUR);
        assert!(new.times.remove_at > old.times.remove_at);
    }
    assert_eq!(shorter.keep, world.records);
    for (old, new) in longer.keep.iter().zip(&shorter.keep) {
        assert_eq!(new.times.remove_at, old.times.remove_at, "{}", new.kid);
    }
}

#[test]
fn rotate_now_signs_with_a_new_key_at_once_and_the_old_one_verifies_for_verify_after() {
    let spec = hourly();
    let mut world = World::new(spec.clone());
    world.step(START);
    assert_eq!(
        kids(&world.records),
        ["k1", "k2"],
        "one successor published ahead"
    );
    let now = START + 20 * MINUTE;

    let rotated = rotate_now(&spec, &world.records, now, false);
    world.apply(&rotated);

    let old = &rotated.keep[0];
    assert_eq!(old.kid, "k1");
    assert_eq!(old.times.retire_at, now);
    assert_eq!(old.times.remove_at, now + spec.verify_after);
    assert_eq!(old.times.state_at(now), KeyState::Retired);
    assert_eq!(
        kids(&rotated.drop),
        ["k2"],
        "the waiting successor never signed"
    );
    assert_eq!(rotated.create[0].activate_at, now);
    assert_eq!(world.signer_at(now).kid, "k3");
    assert!(plan(&spec, &world.records, now).is_noop(&world.records));
}

#[test]
fn rotate_now_with_revoke_previous_drops_the_old_key_at_once() {
    let spec = hourly();
    let mut world = World::new(spec.clone());
    world.step(START);
    let now = START + 20 * MINUTE;

    let plan = rotate_now(&spec, &world.records, now, true);
    world.apply(&plan);

    assert!(!plan.keep.iter().any(|r| r.kid == "k1"), "{:?}", plan.keep);
    let revoked = plan.drop.iter().find(|r| r.kid == "k1").unwrap();
    assert_eq!(revoked.times.remove_at, now);
    assert!(plan.drop.iter().any(|r| r.kid == "k2"));
    assert!(world.record("k1").is_none());
    assert_eq!(world.signer_at(now).kid, "k3");
}

#[test]
fn rotate_now_keeps_the_longer_verify_span_of_a_key_planned_under_a_longer_max_ttl() {
    // Planned under verify_after = 3h; then a reload lowered max_ttl, so verify_after is 1h.
    let mut world = World::new(spec(DAY, 3 * HOUR + 5 * MINUTE, 3 * HOUR));
    world.step(START);
    let shorter = hourly();
    let now = START + 20 * MINUTE;

    let rotated = rotate_now(&shorter, &world.records, now, false);

    let old = rotated.keep.iter().find(|r| r.kid == "k1").unwrap();
    assert_eq!(old.times.retire_at, now);
    assert_eq!(
        old.times.remove_at,
        now + 3 * HOUR,
        "a token signed a moment ago may live 3h"
    );
}
