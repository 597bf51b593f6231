//! Property tests: the feature, macro and template parsers never panic, whatever the input.

use image_builder::template::expand::Expansion;
use image_builder::template::load::parse_step;
use image_builder::template::position::Positions;
use image_builder::template::{plan, Features, PlanOptions};
use proptest::prelude::*;

fn features() -> Features {
    Features::from_directives(["a=1", "m+=x", "m+=y"]).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn feature_directives_never_panic(d in "\\PC{0,24}|[\\^a-z_=+~-]{0,12}") {
        let mut f = Features::default();
        let _ = f.apply(&d);
    }

    #[test]
    fn macros_never_panic(s in "[$a-z{}?!@ ]{0,24}|\\PC{0,16}") {
        if let Ok(x) = Expansion::parse(&s) {
            let _ = x.one(&features());
            let _ = x.list(&features());
        }
    }

    #[test]
    fn parsed_directives_round_trip(name in "[a-z][a-z0-9_]{0,6}", value in "[ -~]{1,8}") {
        let f = Features::from_directives([format!("{name}={value}")]).unwrap();
        prop_assert_eq!(f.values(&name).unwrap(), &[value][..]);
    }

    #[test]
    fn steps_never_panic(json in step_json()) {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&json) {
            let _ = parse_step(&v);
        }
        let _ = Positions::index(&json);
    }

    #[test]
    fn whole_templates_never_panic(body in template_text()) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("g")).unwrap();
        std::fs::write(dir.path().join("g/t.json"), &body).unwrap();
        let p = plan(dir.path(), "g", "t", &features(), &PlanOptions::default());
        let _ = serde_json::to_string(&p).unwrap();
    }
}

fn step_json() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        Just("t"),
        Just("dir"),
        Just("owner"),
        Just("group"),
        Just("mode"),
        Just("file"),
        Just("src"),
        Just("pkgs"),
        Just("with"),
        Just("name"),
        Just("x")
    ];
    let val = prop_oneof![
        Just("\"ensure_dir\"".to_string()),
        Just("\"include\"".to_string()),
        Just("\"pkg_install\"".to_string()),
        Just("\"/a\"".to_string()),
        Just("\"${a}\"".to_string()),
        Just("[\"${@m}\"]".to_string()),
        Just("3".to_string()),
        Just("null".to_string()),
        "\"[ -~]{0,6}\"".prop_map(|s| s),
    ];
    prop::collection::vec((key, val), 0..6).prop_map(|kv| {
        let body: Vec<String> = kv.iter().map(|(k, v)| format!("\"{k}\": {v}")).collect();
        format!("{{ {} }}", body.join(", "))
    })
}

fn template_text() -> impl Strategy<Value = String> {
    let target = prop_oneof![
        Just(r#""dataset": { "name": "${a}" },"#),
        Just(r#""pool": { "name": "rpool", "size": 0, "ashift": 99 },"#),
        Just(r#""iso": { "hybrid": { "stage1": "a", "stage2": "b" } },"#),
        Just(""),
    ];
    (
        target,
        prop::collection::vec(step_json(), 0..4),
        any::<bool>(),
    )
        .prop_map(|(t, steps, truncate)| {
            let s = format!("{{ {t} \"steps\": [ {} ] }}", steps.join(", "));
            if truncate {
                s[..s.len() / 2].to_string()
            } else {
                s
            }
        })
}
