//! The zones plugin against scripted zone tools: the exact zonecfg and zoneadm command
//! lines for each state a zone can be found in. The root is `/` (live) with a
//! [`Recorder`] as the runner, so nothing on this host is touched: the plugin writes no
//! files, and every command goes to the recorder.

use std::path::Path;

use runner::{Output, Recorder};
use serde_json::{json, Value};

use super::super::testing;
use super::*;
use crate::protocol::{ChangeResult, Status};

const GLOBAL: &str = "0:global:running:/::ipkg:shared:0\n";

const WEB_SCRIPT: &str = "create -b; set brand=ipkg; set zonepath=/zones/web; set autoboot=true; \
     set ip-type=exclusive; add net; set physical=web0; set allowed-address=10.0.0.5/24; \
     set defrouter=10.0.0.1; end; add dataset; set name=tank/web; end; verify; commit";

const WEB_EXPORT: &str = "create -b\nset zonepath=/zones/web\nset brand=ipkg\nset autoboot=true\n\
     set ip-type=exclusive\nadd net\nset allowed-address=10.0.0.5/24\nset physical=web0\n\
     set defrouter=10.0.0.1\nend\nadd dataset\nset name=tank/web\nend\n";

fn web(extra: Value) -> Value {
    let mut z = json!({
        "name": "web",
        "networks": [{"physical": "web0", "allowed_address": "10.0.0.5/24", "defrouter": "10.0.0.1"}],
        "datasets": ["tank/web"]
    });
    if let (Some(z), Value::Object(e)) = (z.as_object_mut(), extra) {
        z.extend(e);
    }
    json!({ "zones": [z] })
}

fn listed(state: &str) -> String {
    let id = if state == "running" { "3" } else { "-" };
    format!(
        "{GLOBAL}{id}:web:{state}:/zones/web:9f2e6d1a-4c1b-6a43-e0d2-8c1f0b5e7a21:ipkg:excl:0\n"
    )
}

fn live() -> &'static Path {
    Path::new("/")
}

/// A recorder whose commands without a rule succeed with no output: the plugin reads the
/// output of `zoneadm list -cp` and `zonecfg -z ZONE export` only (they get rules), and
/// zonecfg(8) in command mode and zoneadm(8) install and boot exit 0 on success. The tests
/// using it pin every command line.
fn quiet() -> Recorder {
    Recorder::new().allow_unmatched()
}

fn statuses(r: &[ChangeResult]) -> Vec<(&str, Status)> {
    r.iter().map(|r| (r.id.as_str(), r.status)).collect()
}

#[test]
fn a_new_zone_is_configured_installed_from_its_image_and_booted() {
    let image = tempfile::NamedTempFile::new().unwrap();
    let img = image.path().to_str().unwrap().to_string();
    let rec = quiet();
    rec.on("/usr/sbin/zoneadm list -cp", Output::ok(GLOBAL))
        .on(
            "/usr/sbin/zoneadm list -cp",
            Output::ok(format!("{GLOBAL}-:web:configured:/zones/web::ipkg:excl:\n")),
        )
        .on(
            "/usr/sbin/zoneadm list -cp",
            Output::ok(listed("installed")),
        );
    let d = web(json!({"image": img, "install_args": ["-e", "web/server"]}));
    // The install change tells the daemon it may take the install's hour.
    let plan_rec = Recorder::new();
    plan_rec.always("/usr/sbin/zoneadm list -cp", Output::ok(GLOBAL));
    let planned = testing::plan(&Zones, live(), &plan_rec, d.clone()).unwrap();
    let timeouts: Vec<_> = planned
        .iter()
        .map(|c| (c.id.as_str(), c.timeout_secs))
        .collect();
    assert_eq!(
        timeouts,
        [
            ("web/configure", None),
            ("web/install", Some(3600)),
            ("web/boot", None)
        ]
    );
    let r = testing::apply(&Zones, live(), &rec, d, false).unwrap();
    assert_eq!(
        statuses(&r),
        [
            ("web/configure", Status::Ok),
            ("web/install", Status::Ok),
            ("web/boot", Status::Ok)
        ]
    );
    assert_eq!(
        rec.lines(),
        [
            "/usr/sbin/zoneadm list -cp".to_string(),
            format!("/usr/sbin/zonecfg -z web '{WEB_SCRIPT}'"),
            "/usr/sbin/zoneadm list -cp".to_string(),
            format!("/usr/sbin/zoneadm -z web install -a {img} -e web/server"),
            "/usr/sbin/zoneadm list -cp".to_string(),
            "/usr/sbin/zoneadm -z web boot".to_string(),
        ]
    );
    assert_eq!(rec.calls()[3].get_timeout(), Some(INSTALL_TIMEOUT));
    assert_eq!(
        r[0].actions,
        [format!("run: /usr/sbin/zonecfg -z web '{WEB_SCRIPT}'")]
    );
}

#[test]
fn a_dry_run_plans_and_records_the_same_commands_and_runs_none() {
    let rec = Recorder::new();
    rec.always("/usr/sbin/zoneadm list -cp", Output::ok(GLOBAL));
    let d = web(json!({"boot": false}));
    let changes = testing::plan(&Zones, live(), &rec, d.clone()).unwrap();
    let summaries: Vec<&str> = changes.iter().map(|c| c.summary.as_str()).collect();
    assert_eq!(
        summaries,
        [
            "configure zone web (ipkg, /zones/web, exclusive-IP, 1 net, 1 dataset)",
            "install zone web"
        ]
    );
    rec.clear();
    let r = testing::apply(&Zones, live(), &rec, d, true).unwrap();
    let actions: Vec<&str> = r
        .iter()
        .flat_map(|r| r.actions.iter().map(String::as_str))
        .collect();
    let configure = format!("would run: /usr/sbin/zonecfg -z web '{WEB_SCRIPT}'");
    assert_eq!(
        actions,
        [
            configure.as_str(),
            "would run: /usr/sbin/zoneadm -z web install"
        ]
    );
    assert_eq!(
        rec.lines(),
        ["/usr/sbin/zoneadm list -cp"],
        "only the query ran"
    );
}

#[test]
fn a_running_zone_as_described_needs_nothing() {
    let rec = Recorder::new();
    rec.on("/usr/sbin/zoneadm list -cp", Output::ok(listed("running")))
        .on("/usr/sbin/zonecfg -z web export", Output::ok(WEB_EXPORT));
    let changes = testing::plan(&Zones, live(), &rec, web(json!({}))).unwrap();
    assert!(changes.is_empty(), "{changes:?}");
    assert_eq!(
        rec.lines(),
        [
            "/usr/sbin/zoneadm list -cp",
            "/usr/sbin/zonecfg -z web export"
        ]
    );
}

#[test]
fn an_installed_zone_is_only_booted() {
    let rec = quiet();
    rec.on(
        "/usr/sbin/zoneadm list -cp",
        Output::ok(listed("installed")),
    )
    .on("/usr/sbin/zonecfg -z web export", Output::ok(WEB_EXPORT))
    .on(
        "/usr/sbin/zoneadm list -cp",
        Output::ok(listed("installed")),
    );
    let r = testing::apply(&Zones, live(), &rec, web(json!({})), false).unwrap();
    assert_eq!(statuses(&r), [("web/boot", Status::Ok)]);
    assert_eq!(
        rec.lines(),
        [
            "/usr/sbin/zoneadm list -cp",
            "/usr/sbin/zonecfg -z web export",
            "/usr/sbin/zoneadm list -cp",
            "/usr/sbin/zoneadm -z web boot"
        ]
    );
    // With boot = false an installed zone is left as it is.
    let rec = Recorder::new();
    rec.on(
        "/usr/sbin/zoneadm list -cp",
        Output::ok(listed("installed")),
    )
    .on("/usr/sbin/zonecfg -z web export", Output::ok(WEB_EXPORT));
    let changes = testing::plan(&Zones, live(), &rec, web(json!({"boot": false}))).unwrap();
    assert!(changes.is_empty(), "{changes:?}");
}

#[test]
fn an_incomplete_zone_fails_with_what_to_do() {
    let rec = Recorder::new();
    rec.on(
        "/usr/sbin/zoneadm list -cp",
        Output::ok(listed("incomplete")),
    );
    let r = testing::apply(&Zones, live(), &rec, web(json!({})), false).unwrap();
    assert_eq!(statuses(&r), [("web/incomplete", Status::Failed)]);
    assert_eq!(
        r[0].message.as_deref(),
        Some(
            "zone web is incomplete: an install or uninstall of it did not finish. Look at its \
             install log (under /zones/web), then `zoneadm -z web uninstall -F` returns it to the \
             configured state and the next sysconfig apply installs it again"
        )
    );
    assert_eq!(rec.lines(), ["/usr/sbin/zoneadm list -cp"]);
}

#[test]
fn a_configured_zone_that_differs_is_configured_again_then_installed() {
    const OLD: &str = "create -b\nset zonepath=/zones/web\nset brand=ipkg\nset autoboot=false\n\
                       set ip-type=exclusive\n";
    let rec = Recorder::new();
    rec.on(
        "/usr/sbin/zoneadm list -cp",
        Output::ok(listed("configured")),
    )
    .on("/usr/sbin/zonecfg -z web export", Output::ok(OLD));
    let d = web(json!({}));
    let changes = testing::plan(&Zones, live(), &rec, d.clone()).unwrap();
    assert_eq!(
        changes[0].summary,
        "configure zone web again (configured, not installed; autoboot is false (want true); \
         net resources are [] (want [physical=web0 allowed-address=10.0.0.5/24 defrouter=10.0.0.1]); \
         datasets are [] (want [tank/web]))"
    );
    let rec = quiet();
    rec.on(
        "/usr/sbin/zoneadm list -cp",
        Output::ok(listed("configured")),
    )
    .on("/usr/sbin/zonecfg -z web export", Output::ok(OLD))
    .on(
        "/usr/sbin/zoneadm list -cp",
        Output::ok(listed("configured")),
    )
    .on(
        "/usr/sbin/zoneadm list -cp",
        Output::ok(listed("installed")),
    );
    let r = testing::apply(&Zones, live(), &rec, d, false).unwrap();
    assert!(r.iter().all(|r| r.status == Status::Ok), "{r:?}");
    let replace = WEB_SCRIPT.replacen("create -b", "create -F -b", 1);
    assert_eq!(
        rec.lines(),
        [
            "/usr/sbin/zoneadm list -cp".to_string(),
            "/usr/sbin/zonecfg -z web export".to_string(),
            format!("/usr/sbin/zonecfg -z web '{replace}'"),
            "/usr/sbin/zoneadm list -cp".to_string(),
            "/usr/sbin/zoneadm -z web install".to_string(),
            "/usr/sbin/zoneadm list -cp".to_string(),
            "/usr/sbin/zoneadm -z web boot".to_string(),
        ]
    );
}

#[test]
fn an_installed_zone_that_differs_is_reported_and_left_alone() {
    let rec = Recorder::new();
    rec.on("/usr/sbin/zoneadm list -cp", Output::ok(listed("running")))
        .on(
            "/usr/sbin/zonecfg -z web export",
            Output::ok(WEB_EXPORT.replace("set brand=ipkg", "set brand=nlipkg")),
        );
    let r = testing::apply(&Zones, live(), &rec, web(json!({})), false).unwrap();
    assert_eq!(statuses(&r), [("web/conflict", Status::Failed)]);
    let msg = r[0].message.as_deref().unwrap_or_default();
    assert!(
        msg.starts_with(
            "zone web is running and its configuration differs from the description: \
             brand is nlipkg (want ipkg). sysconfig reconfigures only zones that are not installed yet"
        ),
        "{msg}"
    );
    assert_eq!(
        rec.lines(),
        [
            "/usr/sbin/zoneadm list -cp",
            "/usr/sbin/zonecfg -z web export"
        ]
    );
}

#[test]
fn a_failed_zonecfg_removes_the_partial_zone_and_stops_that_zone() {
    let rec = Recorder::new();
    rec.on("/usr/sbin/zoneadm list -cp", Output::ok(GLOBAL))
        .on(
            "/usr/sbin/zonecfg -z web 'create",
            Output::failed(1, "On line 1:\nweb0: No such link\nweb: Invalid argument"),
        )
        // zonecfg(8): `delete -F` removes the configuration without asking and prints nothing.
        .on("/usr/sbin/zonecfg -z web delete -F", Output::ok(""))
        .on("/usr/sbin/zoneadm list -cp", Output::ok(GLOBAL))
        .on("/usr/sbin/zoneadm list -cp", Output::ok(GLOBAL));
    let r = testing::apply(&Zones, live(), &rec, web(json!({})), false).unwrap();
    assert_eq!(
        statuses(&r),
        [
            ("web/configure", Status::Failed),
            ("web/install", Status::Failed),
            ("web/boot", Status::Failed)
        ]
    );
    assert_eq!(
        r[0].message.as_deref(),
        Some(
            format!(
                "`/usr/sbin/zonecfg -z web '{WEB_SCRIPT}'` failed (exit status 1): On line 1: | \
                 web0: No such link | web: Invalid argument (the partial configuration was deleted)"
            )
            .as_str()
        )
    );
    assert_eq!(
        r[1].message.as_deref(),
        Some("zone web is not configured (its configuration failed); not going on with it")
    );
    assert_eq!(
        rec.lines(),
        [
            "/usr/sbin/zoneadm list -cp".to_string(),
            format!("/usr/sbin/zonecfg -z web '{WEB_SCRIPT}'"),
            "/usr/sbin/zonecfg -z web delete -F".to_string(),
            "/usr/sbin/zoneadm list -cp".to_string(),
            "/usr/sbin/zoneadm list -cp".to_string(),
        ]
    );
}

#[test]
fn a_missing_image_fails_the_install_before_zoneadm_runs() {
    let rec = Recorder::new();
    rec.on(
        "/usr/sbin/zoneadm list -cp",
        Output::ok(listed("configured")),
    )
    .on("/usr/sbin/zonecfg -z web export", Output::ok(WEB_EXPORT))
    .on(
        "/usr/sbin/zoneadm list -cp",
        Output::ok(listed("configured")),
    );
    let d = web(json!({"image": "/nonexistent/web.zone.tar", "boot": false}));
    let r = testing::apply(&Zones, live(), &rec, d, false).unwrap();
    assert_eq!(statuses(&r), [("web/install", Status::Failed)]);
    assert_eq!(
        r[0].message.as_deref(),
        Some("zone web: image /nonexistent/web.zone.tar does not exist")
    );
    assert!(!rec.lines().iter().any(|l| l.contains(" install")));
}

#[test]
fn zones_changing_state_or_mounted_fail_and_say_why() {
    for state in ["shutting_down", "down", "mounted"] {
        let rec = Recorder::new();
        rec.on("/usr/sbin/zoneadm list -cp", Output::ok(listed(state)));
        let r = testing::apply(&Zones, live(), &rec, web(json!({})), false).unwrap();
        assert_eq!(statuses(&r), [("web/state", Status::Failed)], "{state}");
        assert!(
            r[0].message
                .as_deref()
                .unwrap_or_default()
                .starts_with(&format!(
                    "zone web is {state}; sysconfig leaves a zone alone"
                )),
            "{r:?}"
        );
    }
}

#[test]
fn under_an_alternate_root_every_change_is_skipped_and_nothing_runs() {
    let t = tempfile::tempdir().unwrap();
    let rec = Recorder::new();
    let r = testing::apply(&Zones, t.path(), &rec, web(json!({})), false).unwrap();
    assert_eq!(
        statuses(&r),
        [
            ("web/configure", Status::Skipped),
            ("web/install", Status::Skipped),
            ("web/boot", Status::Skipped)
        ]
    );
    assert_eq!(r[0].message.as_deref(), Some(ALT_ROOT));
    assert!(rec.lines().is_empty());
}

#[test]
fn a_bad_description_is_a_plan_error_that_names_field_and_value() {
    let rec = Recorder::new();
    let err = testing::plan(
        &Zones,
        live(),
        &rec,
        json!({"zones": [{"name": "global"}, {"name": "ok", "zonepath": "relative"}]}),
    )
    .unwrap_err();
    assert_eq!(
        err,
        "zones[0].name: \"global\" is the global zone's name; zones[1].zonepath: \"relative\" is \
         not an absolute path of letters, digits and '-_.+/' (not /, no trailing /)"
    );
    let err = testing::plan(
        &Zones,
        live(),
        &rec,
        json!({"zones": [{"name": "a", "autoboot": "yes"}]}),
    )
    .unwrap_err();
    assert_eq!(
        err,
        "zones[0].autoboot = \"yes\": invalid type: string \"yes\", expected a boolean"
    );
    assert!(rec.lines().is_empty(), "nothing runs for a bad description");
}

#[test]
fn the_config_file_form_is_an_array_of_tables() {
    let doc = crate::tomljson::parse(
        r#"
[[zones]]
name = "web"
brand = "nlipkg"
zonepath = "/export/zones/web"
image = "/var/tmp/web.zone.tar"
datasets = ["tank/web"]

[[zones.networks]]
physical = "web0"
allowed_address = "10.0.0.5/24"
defrouter = "10.0.0.1"

[[zones]]
name = "legacy"
ip_type = "shared"
autoboot = false
boot = false
networks = [{ physical = "vioif0", address = "192.168.1.9/24" }]
"#,
    )
    .unwrap();
    let d: crate::schema::Desired = serde_json::from_value(doc).unwrap();
    assert_eq!(d.zones.len(), 2);
    assert_eq!(
        zonecfg_script(&d.zones[0], false),
        "create -b; set brand=nlipkg; set zonepath=/export/zones/web; set autoboot=true; \
         set ip-type=exclusive; add net; set physical=web0; set allowed-address=10.0.0.5/24; \
         set defrouter=10.0.0.1; end; add dataset; set name=tank/web; end; verify; commit"
    );
    assert_eq!(
        zonecfg_script(&d.zones[1], false),
        "create -b; set brand=ipkg; set zonepath=/zones/legacy; set autoboot=false; \
         set ip-type=shared; add net; set physical=vioif0; set address=192.168.1.9/24; end; \
         verify; commit"
    );
    assert!(check(&d.zones).is_ok());
}
