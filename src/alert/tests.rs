use super::*;

fn spec() -> RuleSpec {
    RuleSpec {
        name: "slow-mobile".into(),
        kind: Some("pageview".into()),
        filters: vec!["device=mobile".into()],
        stat: "p95:latency_ms".into(),
        window: "5m".into(),
        above: Some(500.0),
        hold: Some("1m".into()),
        webhook: "https://hooks.example/rta".into(),
        ..RuleSpec::default()
    }
}

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_millis(1_700_000_000_000 + seconds * 1000).unwrap()
}

#[test]
fn a_valid_rule_and_its_parts() {
    let rule = spec().validate(false).unwrap();
    assert_eq!(rule.window, Duration::from_secs(300));
    assert_eq!(rule.hold, Duration::from_secs(60));
    assert_eq!(rule.condition, Condition::Above(500.0));
    assert_eq!(rule.measure, Measure::Stat("p95:latency_ms".into()));
    assert_eq!(
        dashboard_link("https://rta.example.com/", &rule),
        "https://rta.example.com/?window=5m&where=type%3Dpageview&where=device%3Dmobile"
    );
}

#[test]
fn a_malformed_rule_is_refused_naming_the_part() {
    let cases: Vec<(RuleSpec, &str)> = vec![
        (
            RuleSpec {
                name: "no spaces".into(),
                ..spec()
            },
            "name",
        ),
        (
            RuleSpec {
                name: String::new(),
                ..spec()
            },
            "name",
        ),
        (
            RuleSpec {
                window: "5s".into(),
                ..spec()
            },
            "window",
        ),
        (
            RuleSpec {
                window: "soon".into(),
                ..spec()
            },
            "window",
        ),
        (
            RuleSpec {
                hold: Some("a while".into()),
                ..spec()
            },
            "for",
        ),
        (
            RuleSpec {
                above: None,
                ..spec()
            },
            "condition",
        ),
        (
            RuleSpec {
                below: Some(1.0),
                ..spec()
            },
            "condition",
        ),
        (
            RuleSpec {
                absent: true,
                ..spec()
            },
            "condition",
        ),
        (
            RuleSpec {
                above: Some(f64::NAN),
                ..spec()
            },
            "condition",
        ),
        (
            RuleSpec {
                above: None,
                absent: true,
                ..spec()
            },
            "stat",
        ),
        (
            RuleSpec {
                stat: "p95".into(),
                ..spec()
            },
            "query",
        ),
        (
            RuleSpec {
                stat: "median:latency_ms".into(),
                ..spec()
            },
            "query",
        ),
        (
            RuleSpec {
                stat: "top:path".into(),
                ..spec()
            },
            "stat",
        ),
        (
            RuleSpec {
                filters: vec!["device".into()],
                ..spec()
            },
            "query",
        ),
        (
            RuleSpec {
                webhook: "http://10.0.0.8/hook".into(),
                ..spec()
            },
            "webhook",
        ),
        (
            RuleSpec {
                webhook: "mailto:ops@example.com".into(),
                ..spec()
            },
            "webhook",
        ),
    ];
    for (spec, field) in cases {
        let refused = spec.clone().validate(false).unwrap_err();
        assert_eq!(refused.field, field, "{spec:?}: {refused}");
        assert!(!refused.reason.is_empty());
    }
    let absent = RuleSpec {
        above: None,
        absent: true,
        stat: "count".into(),
        ..spec()
    };
    assert_eq!(absent.validate(false).unwrap().condition, Condition::Absent);
}

#[test]
fn a_rule_fires_after_its_for_and_resolves_once() {
    let rule = spec().validate(false).unwrap();
    let (s, c) = rule.step(State::Ok, true, at(0));
    assert_eq!((s, c), (State::Pending { since: at(0) }, None));
    let (s, c) = rule.step(s, true, at(59));
    assert_eq!((s, c), (State::Pending { since: at(0) }, None));
    let (s, c) = rule.step(s, true, at(60));
    assert_eq!(
        (s, c),
        (State::Firing { since: at(60) }, Some(Change::Firing))
    );
    let (s, c) = rule.step(s, true, at(61));
    assert_eq!((s, c), (State::Firing { since: at(60) }, None), "no repeat");
    let (s, c) = rule.step(s, false, at(62));
    assert_eq!((s, c), (State::Ok, Some(Change::Resolved)));
    let (s, c) = rule.step(s, false, at(63));
    assert_eq!((s, c), (State::Ok, None));
    // Pending that stops holding goes back quietly.
    let (s, _) = rule.step(State::Ok, true, at(100));
    assert_eq!(rule.step(s, false, at(101)), (State::Ok, None));
    // Without a `for`, the first evaluation that holds fires.
    let now = RuleSpec {
        hold: None,
        ..spec()
    }
    .validate(false)
    .unwrap();
    assert_eq!(
        now.step(State::Ok, true, at(5)),
        (State::Firing { since: at(5) }, Some(Change::Firing))
    );
}

#[test]
fn conditions_compare_as_stated() {
    let above = spec().validate(false).unwrap();
    assert!(above.holds(3, Some(500.5)));
    assert!(!above.holds(3, Some(500.0)));
    assert!(!above.holds(0, None), "no value, no judgement");
    let below = RuleSpec {
        above: None,
        below: Some(10.0),
        stat: "rate".into(),
        ..spec()
    }
    .validate(false)
    .unwrap();
    assert!(below.holds(0, Some(0.0)));
    assert!(!below.holds(50, Some(10.0)));
    let absent = RuleSpec {
        above: None,
        absent: true,
        stat: "count".into(),
        ..spec()
    }
    .validate(false)
    .unwrap();
    assert!(absent.holds(0, Some(0.0)));
    assert!(!absent.holds(1, Some(1.0)));
}

#[test]
fn states_round_trip_through_their_stored_parts() {
    for state in [
        State::Ok,
        State::Pending { since: at(1) },
        State::Firing { since: at(2) },
    ] {
        let back = State::from_parts(state.name(), state.since().map(|t| t.millis()));
        assert_eq!(back, Some(state));
    }
    assert_eq!(State::from_parts("firing", None), None);
    assert_eq!(State::from_parts("sleeping", Some(1)), None);
}
