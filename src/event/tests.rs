use super::timestamp::utc_millis;
use super::*;
use serde_json::json;

fn parse(v: Json) -> Result<Event, EventError> {
    parse_event(v, &Limits::default(), Timestamp(1_000))
}

#[test]
fn events_of_one_body_share_their_repeated_strings() {
    let body = concat!(
        r#"{"type":"sales","source":"web","values":{"amount":1,"region":"EU","shop":{"id":"a"}}}"#,
        "\n",
        r#"{"type":"sales","source":"web","values":{"amount":2,"region":"EU","shop":{"id":"b"}}}"#,
        "\n",
        r#"{"type":"sales","source":"web","values":{"units":3,"region":"US"}}"#,
        "\n",
        r#"{"type":"users","source":"web","values":{"region":"EU","amount":5}}"#,
    );
    let parsed = parse_body(
        body.as_bytes(),
        BodyFormat::Ndjson,
        &Limits::default(),
        Timestamp(0),
    )
    .unwrap();
    let [a, b, c, d] = &parsed.events[..] else {
        panic!("four events expected, got {:?}", parsed);
    };
    assert!(Arc::ptr_eq(&a.source, &b.source) && Arc::ptr_eq(&b.source, &c.source));
    for i in 0..3 {
        assert_eq!(a.values[i].0, b.values[i].0);
        assert!(
            Arc::ptr_eq(&a.values[i].0, &b.values[i].0),
            "{}",
            a.values[i].0
        );
    }
    let text = |e: &Event, i: usize| match &e.values[i].1 {
        Value::Dimension(s) => s.clone(),
        Value::Measure(x) => panic!("a dimension expected, got {x}"),
    };
    assert!(Arc::ptr_eq(&text(a, 1), &text(b, 1)));
    assert_eq!((&*text(a, 2), &*text(b, 2)), ("a", "b"));
    // Other names at the same places are still told apart.
    assert_eq!(
        c.values.iter().map(|(n, _)| &**n).collect::<Vec<_>>(),
        ["region", "units"]
    );
    assert_eq!(&*text(c, 0), "US");
    // A name met at another place in an earlier event is shared too.
    let name = |e: &Event, n: &str| {
        e.values
            .iter()
            .find(|(k, _)| &**k == n)
            .map(|(k, _)| k.clone())
            .expect("the field is there")
    };
    for n in ["amount", "region"] {
        assert!(Arc::ptr_eq(&name(a, n), &name(d, n)), "{n}");
    }
}

#[test]
fn parses_the_canonical_event() {
    let e = parse(
        json!({"timestamp": "2023-04-01T12:00:00Z", "source": "web-app", "type": "sales",
        "values": {"amount": 150, "units": 5, "region": "North America"}}),
    )
    .unwrap();
    assert_eq!(e.timestamp.millis(), 1_680_350_400_000);
    assert_eq!(&*e.source, "web-app");
    assert_eq!(e.kind.as_str(), "sales");
    assert_eq!(
        e.measures().collect::<Vec<_>>(),
        vec![("amount", 150.0), ("units", 5.0)]
    );
    assert_eq!(
        e.dimensions().collect::<Vec<_>>(),
        vec![("region", "North America")]
    );
    assert_eq!(
        e.values_json(),
        r#"{"amount":150,"region":"North America","units":5}"#
    );
}

#[test]
fn usual_events_take_the_fast_path_and_unusual_ones_the_precise_one() {
    let fast = |text: &str| {
        fast::parse(
            text,
            &Limits::default(),
            Timestamp(0),
            &mut fast::Interner::default(),
        )
    };
    let canonical = r#"{"timestamp": "2023-04-01T12:00:00Z", "source": "web-app", "type": "sales",
        "values": {"amount": 150, "units": 5.5, "region": "North America", "ok": true, "n": {"x": null}}}"#;
    assert_eq!(
        fast(canonical),
        parse_event_str(canonical, &Limits::default(), Timestamp(0)).ok()
    );
    assert!(fast(canonical).is_some());
    // A key given twice: the precise path keeps the last, the fast path declines.
    for text in [
        r#"{"type":"a","values":{"x":{"b":1},"x":{"c":2}}}"#,
        r#"{"type":"a","values":{"x":1},"values":{"y":2}}"#,
        r#"{"type":"a","values":{"x":1,"x":{"c":2}}}"#,
        r#"{"type":"a\u0062"}"#,
        r#"{"type":"a","values":{"x":[1]}}"#,
    ] {
        assert_eq!(fast(text), None, "{text}");
    }
    let last_wins = parse_event_str(
        r#"{"type":"a","values":{"x":{"b":1},"x":{"c":2}}}"#,
        &Limits::default(),
        Timestamp(0),
    );
    assert_eq!(last_wins.unwrap().values_json(), r#"{"x.c":2}"#);
}

#[test]
fn defaults_and_numeric_timestamps() {
    let e = parse(json!({"type": "x"})).unwrap();
    assert_eq!(e.timestamp.millis(), 1_000);
    assert_eq!(&*e.source, "unknown");
    assert_eq!(
        parse(json!({"type": "x", "timestamp": 1_680_350_400}))
            .unwrap()
            .timestamp
            .millis(),
        1_680_350_400_000
    );
    assert_eq!(
        parse(json!({"type": "x", "timestamp": 1_680_350_400_123_i64}))
            .unwrap()
            .timestamp
            .millis(),
        1_680_350_400_123
    );
}

#[test]
fn flattens_nested_objects_and_keeps_booleans() {
    let e =
        parse(json!({"type": "x", "values": {"geo": {"country": "FR", "lat": 1.5}, "ok": true}}))
            .unwrap();
    assert_eq!(
        e.values_json(),
        r#"{"geo.country":"FR","geo.lat":1.5,"ok":"true"}"#
    );
}

#[test]
fn rejects_with_precise_messages() {
    let cases = [
        (json!([1]), "an event must be a JSON object, got an array"),
        (json!({"source": "a"}), "missing field `type`"),
        (
            json!({"type": 5}),
            "field `type` must be a string, got a number",
        ),
        (json!({"type": "a b"}), "field `type` `a b` contains ' '"),
        (json!({"type": "x", "extra": 1}), "unknown field `extra`"),
        (
            json!({"type": "x", "values": {"tags": [1]}}),
            "field `values.tags` is an array",
        ),
        (
            json!({"type": "x", "values": 3}),
            "field `values` must be an object",
        ),
        (
            json!({"type": "x", "timestamp": "yesterday"}),
            "field `timestamp` `yesterday` is not an RFC 3339",
        ),
        (
            json!({"type": "x", "timestamp": -5}),
            "field `timestamp` -5 is outside",
        ),
        (
            json!({"type": "x", "values": {"a": {"b": 1}, "a.b": 2}}),
            "field `values.a.b` appears twice",
        ),
    ];
    for (input, expected) in cases {
        let err = parse(input.clone()).unwrap_err().to_string();
        assert!(
            err.starts_with(expected),
            "{input}: got {err:?}, expected {expected:?}"
        );
    }
}

#[test]
fn enforces_limits() {
    let limits = Limits {
        max_type_len: 3,
        max_fields: 2,
        max_string_len: 4,
        ..Limits::default()
    };
    let p = |v| {
        parse_event(v, &limits, Timestamp(0))
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        p(json!({"type": "abcd"})),
        "field `type` is 4 characters long; the limit is 3"
    );
    assert_eq!(
        p(json!({"type": "a", "values": {"a": 1, "b": 2, "c": 3}})),
        "`values` has more than 2 fields"
    );
    assert_eq!(
        p(json!({"type": "a", "values": {"s": "hello"}})),
        "field `values.s` is longer than 4 characters"
    );
}

#[test]
fn rejects_out_of_range_numbers_in_text() {
    let err = parse_event_str(
        r#"{"type":"x","values":{"a":1e400}}"#,
        &Limits::default(),
        Timestamp(0),
    )
    .unwrap_err();
    assert!(err.to_string().contains("number out of range"), "{err}");
}

#[test]
fn bodies_keep_every_valid_event() {
    let l = Limits::default();
    let p = parse_body(
        br#"[{"type":"a"}, {"type":5}, {"type":"b","values":{"x":1e400}}, {"type":"c"}]"#,
        BodyFormat::Json,
        &l,
        Timestamp(0),
    )
    .unwrap();
    assert_eq!(p.events.len(), 2);
    assert_eq!(
        p.rejected.iter().map(|r| r.index).collect::<Vec<_>>(),
        vec![1, 2]
    );
    let p = parse_body(
        b"{\"type\":\"a\"}\n\nnot json\n{\"type\":\"b\"}\n",
        BodyFormat::Ndjson,
        &l,
        Timestamp(0),
    )
    .unwrap();
    assert_eq!(p.events.len(), 2);
    assert_eq!(p.rejected[0].line, Some(3));
    assert_eq!(p.rejected[0].index, 1);
    let err = parse_body(b"[{\"type\":\"a\"}", BodyFormat::Json, &l, Timestamp(0)).unwrap_err();
    assert!(err.0.contains("line 1 column 13"), "{err}");
    assert!(parse_body(b"  ", BodyFormat::Json, &l, Timestamp(0)).is_err());
}

mod props {
    use super::*;
    use proptest::prelude::*;

    fn json_value() -> impl Strategy<Value = Json> {
        let leaf = prop_oneof![
            Just(Json::Null),
            any::<bool>().prop_map(Json::Bool),
            any::<f64>()
                .prop_map(|x| serde_json::Number::from_f64(x).map_or(Json::Null, Json::Number)),
            any::<i64>().prop_map(|x| Json::Number(x.into())),
            ".{0,20}".prop_map(Json::String),
        ];
        leaf.prop_recursive(6, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..8).prop_map(Json::Array),
                prop::collection::btree_map(
                    prop_oneof![
                        Just("type".to_string()),
                        Just("values".to_string()),
                        Just("timestamp".to_string()),
                        Just("source".to_string()),
                        ".{0,8}"
                    ],
                    inner,
                    0..8
                )
                .prop_map(|m| Json::Object(m.into_iter().collect())),
            ]
        })
    }

    #[test]
    fn quick_timestamps_know_leap_days() {
        for s in [
            "2024-02-29T00:00:00Z",
            "2000-02-29T23:59:59.999Z",
            "1970-01-01T00:00:00.1Z",
        ] {
            let chrono = DateTime::parse_from_rfc3339(s).map(|t| t.timestamp_millis());
            assert_eq!(utc_millis(s), chrono.ok(), "{s}");
        }
        for s in [
            "2023-02-29T00:00:00Z",
            "1900-02-29T00:00:00Z",
            "2024-04-31T00:00:00Z",
        ] {
            assert_eq!(utc_millis(s), None, "{s}");
        }
    }

    proptest! {
        /// The quick reader of the usual shape agrees with chrono on
        /// every timestamp it accepts, and accepts every usual one.
        #[test]
        fn quick_timestamps_agree_with_chrono(
            (y, mo, d) in (0i64..10_000, 1i64..13, 1i64..32),
            (h, mi, sec) in (0i64..25, 0i64..61, 0i64..61),
            fraction in prop::option::of("[0-9]{1,10}"),
        ) {
            let fraction = fraction.map(|f| format!(".{f}")).unwrap_or_default();
            let s = format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{sec:02}{fraction}Z");
            let chrono = DateTime::parse_from_rfc3339(&s).ok().map(|t| t.timestamp_millis());
            match utc_millis(&s) {
                Some(ms) => prop_assert_eq!(Some(ms), chrono, "{}", s),
                // Leap seconds and fractions beyond nanoseconds are chrono's.
                None => prop_assert!(chrono.is_none() || sec == 60 || fraction.len() > 10, "{}", s),
            }
        }

        /// Near misses of the shape are never misread.
        #[test]
        fn quick_timestamps_refuse_what_chrono_refuses(s in "[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{0,4})?([Zz]|[+-][0-9]{2}:[0-9]{2})?") {
            let chrono = DateTime::parse_from_rfc3339(&s).ok().map(|t| t.timestamp_millis());
            if let Some(ms) = utc_millis(&s) {
                prop_assert_eq!(Some(ms), chrono, "{}", s);
            }
            prop_assert_eq!(Timestamp::rfc3339_millis(&s), chrono, "{}", s);
        }
    }

    /// Objects that are often valid events, and often almost.
    fn event_like() -> impl Strategy<Value = Json> {
        let name = prop_oneof![
            Just("a".to_string()),
            Just("b".to_string()),
            "[a-c.]{0,8}",
            ".{0,3}"
        ];
        let values = prop::collection::btree_map(name, json_value(), 0..6)
            .prop_map(|m| Json::Object(m.into_iter().collect()))
            .boxed();
        (
            prop_oneof![
                Just(json!("sales")),
                Just(json!("a.b-c_1")),
                Just(json!("bad type")),
                Just(json!(5))
            ],
            prop_oneof![
                Just(Json::Null),
                values.clone(),
                prop::collection::btree_map("[ab]", values, 0..3)
                    .prop_map(|m| Json::Object(m.into_iter().collect()))
            ],
            prop_oneof![
                Just(Json::Null),
                Just(json!("2023-04-01T12:00:00.5+02:00")),
                Just(json!("2023-04-01")),
                any::<i64>().prop_map(|x| json!(x)),
                (-1e14f64..1e14).prop_map(|x| json!(x))
            ],
            prop_oneof![
                Just(Json::Null),
                Just(json!("")),
                Just(json!("web")),
                Just(json!("a\u{1}")),
                Just(json!("long-source"))
            ],
            any::<u8>(),
        )
            .prop_map(|(kind, values, timestamp, source, mask)| {
                let mut object = serde_json::Map::new();
                for (bit, key, value) in [
                    (1, "type", kind),
                    (2, "values", values),
                    (4, "timestamp", timestamp),
                    (8, "source", source),
                ] {
                    if mask & bit != 0 || key == "type" && mask & 16 != 0 {
                        object.insert(key.into(), value);
                    }
                }
                Json::Object(object)
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            let limits = Limits::default();
            let _ = parse_body(&bytes, BodyFormat::Json, &limits, Timestamp(0));
            let _ = parse_body(&bytes, BodyFormat::Ndjson, &limits, Timestamp(0));
        }

        #[test]
        fn the_fast_path_agrees_with_the_precise_one(value in prop_oneof![json_value(), event_like()]) {
            let limits = Limits { max_fields: 4, max_string_len: 6, max_field_name_len: 6, ..Limits::default() };
            let text = serde_json::to_string(&value).unwrap();
            let precise = parse_event(value, &limits, Timestamp(0));
            let fast = fast::parse(&text, &limits, Timestamp(0), &mut fast::Interner::default());
            if let Some(event) = fast {
                prop_assert_eq!(Ok(event), precise);
            }
        }

        #[test]
        fn accepted_events_are_valid(value in json_value()) {
            let limits = Limits::default();
            if let Ok(event) = parse_event(value, &limits, Timestamp(0)) {
                let kind = event.kind.as_str();
                prop_assert!(!kind.is_empty() && kind.len() <= limits.max_type_len);
                prop_assert!(kind.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c)));
                prop_assert!(event.values.len() <= limits.max_fields);
                prop_assert!(event.values.windows(2).all(|w| w[0].0 < w[1].0), "sorted and unique");
                prop_assert!(event.measures().all(|(_, x)| x.is_finite()));
                // What is stored reads back as the same event.
                let back = Event::from_stored(event.timestamp.millis(), kind, &event.source, &event.values_json());
                prop_assert_eq!(back, Ok(event));
            }
        }
    }
}
