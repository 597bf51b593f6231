//! timezone: illumos keeps the system time zone in the `TZ=` line of /etc/default/init
//! (TIMEZONE(5); the line must stand alone, without leading blanks). Solaris 11's
//! `svc:/system/timezone` service does not exist on illumos.
//!
//! The hardware clock is left in UTC, as VMs and clouds keep it: `rtc -z ZONE` would
//! record ZONE in /etc/rtc_config and make the kernel read the clock as ZONE's local
//! time (illumos-gate usr/src/cmd/rtc/rtc.c: `initialize_zone` sets the GMT lag, then
//! `RTCSYNC` sets the system time from the clock "assuming the rtc was the correct local
//! time"), so a UTC clock would be off by the zone's offset after every boot. When
//! /etc/rtc_config names another zone than UTC (an installer may leave one), it is set
//! back to UTC: `rtc -z UTC` on the running system, else the file as `set_zone` writes it.
//! Without /etc/rtc_config, `rtc` reports GMT (`display_zone_string`): nothing to do.

use runner::Cmd;
use serde::{Deserialize, Serialize};

use super::{Ctx, Outcome, Planned, Plugin, PluginError};

pub struct Timezone;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Input {
    #[serde(default)]
    pub timezone: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Change {
    /// The `TZ=` line of /etc/default/init.
    Tz,
    /// The hardware clock kept in UTC.
    Rtc,
}

pub fn init_with(text: &str, tz: &str) -> String {
    let mut out = String::new();
    let mut done = false;
    for l in text.lines() {
        if l.starts_with("TZ=") {
            if !done {
                out.push_str(&format!("TZ={tz}\n"));
                done = true;
            }
        } else {
            out.push_str(l);
            out.push('\n');
        }
    }
    if !done {
        out.push_str(&format!("TZ={tz}\n"));
    }
    out
}

const RTC_CONFIG: &str = "/etc/rtc_config";

/// The `zone_info=` of /etc/rtc_config, as rtc.c's `open_zonefile` reads it.
pub fn rtc_zone(text: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let s = &l[l.find('z')?..];
        let v = s.strip_prefix("zone_info")?;
        let v = v[v.find('=')? + 1..].trim_start_matches([' ', '\t']);
        Some(v.trim_end().to_string())
    })
}

fn rtc_is_utc(zone: &str) -> bool {
    matches!(
        zone,
        "UTC" | "GMT" | "Etc/UTC" | "Etc/GMT" | "UCT" | "Zulu" | "Universal"
    )
}

/// /etc/rtc_config for a UTC clock, as rtc.c's `set_zone` writes it.
pub fn rtc_config_utc() -> String {
    format!(
        "#\n#\tThis file ({RTC_CONFIG}) contains information used to manage the\n\
         #\tx86 real time clock hardware.  The hardware is kept in\n\
         #\tthe machine's local time for compatibility with other x86\n\
         #\toperating systems.  This file is read by the kernel at\n\
         #\tboot time.  It is set and updated by the /usr/sbin/rtc\n\
         #\tcommand.  The 'zone_info' field designates the local\n\
         #\ttime zone.  The 'zone_lag' field indicates the number\n\
         #\tof seconds between local time and Greenwich Mean Time.\n\
         #\nzone_info=UTC\nzone_lag=0\n"
    )
}

fn valid(tz: &str) -> bool {
    !tz.is_empty()
        && !tz.starts_with('/')
        && !tz.split('/').any(|p| p == ".." || p.is_empty())
        && tz
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/_-+".contains(&b))
}

impl Plugin for Timezone {
    const NAME: &'static str = "timezone";
    const KEYS: &'static [&'static str] = &["timezone"];

    type Input = Input;
    type Change = Change;

    fn plan(&self, ctx: &Ctx, input: &Input) -> Result<Vec<Planned<Change>>, PluginError> {
        let Some(tz) = &input.timezone else {
            return Ok(vec![]);
        };
        let invalid = |reason: String| PluginError::Invalid {
            what: "timezone".into(),
            value: tz.clone(),
            reason,
        };
        if !valid(tz) {
            return Err(invalid("is not a zoneinfo name".into()));
        }
        let zoneinfo = "/usr/share/lib/zoneinfo";
        if ctx.root.exists(zoneinfo).unwrap_or(false)
            && !ctx.root.exists(format!("{zoneinfo}/{tz}")).unwrap_or(false)
        {
            return Err(invalid(format!("is not in {zoneinfo}")));
        }
        let text = ctx.read("/etc/default/init")?.unwrap_or_default();
        let mut out = Vec::new();
        if init_with(&text, tz) != text {
            out.push(Planned::new(
                "timezone",
                "tz",
                format!("set TZ={tz} in /etc/default/init"),
                Change::Tz,
            ));
        }
        if let Some(zone) = ctx.read(RTC_CONFIG)?.as_deref().and_then(rtc_zone) {
            if !rtc_is_utc(&zone) {
                out.push(Planned::new(
                    "timezone",
                    "rtc",
                    format!("keep the hardware clock in UTC ({RTC_CONFIG} has zone_info={zone})"),
                    Change::Rtc,
                ));
            }
        }
        Ok(out)
    }

    fn apply(&self, ctx: &Ctx, input: &Input, c: &Change) -> Result<Outcome, PluginError> {
        if *c == Change::Rtc {
            if ctx.live() {
                // rtc(8): -z records the zone and resets the kernel's GMT lag.
                ctx.run(Cmd::new("/usr/sbin/rtc").args(["-z", "UTC"]))?;
            } else {
                ctx.write(RTC_CONFIG, rtc_config_utc().as_bytes(), 0o644, None)?;
            }
            return Ok(Outcome::Done);
        }
        let tz = input
            .timezone
            .as_deref()
            .ok_or_else(|| PluginError::NotDesired("timezone".into()))?;
        let text = ctx.read("/etc/default/init")?.unwrap_or_default();
        ctx.write(
            "/etc/default/init",
            init_with(&text, tz).as_bytes(),
            0o644,
            None,
        )?;
        Ok(Outcome::Done)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing;
    use super::*;
    use runner::Recorder;
    use serde_json::json;

    #[test]
    fn tz_line_is_replaced_and_checked_against_zoneinfo() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("etc/default")).unwrap();
        std::fs::create_dir_all(t.path().join("usr/share/lib/zoneinfo/Europe")).unwrap();
        std::fs::write(t.path().join("usr/share/lib/zoneinfo/Europe/Zurich"), "").unwrap();
        std::fs::write(
            t.path().join("etc/default/init"),
            "# init\nTZ=UTC\nCMASK=022\n",
        )
        .unwrap();
        let rec = Recorder::new();
        testing::apply(
            &Timezone,
            t.path(),
            &rec,
            json!({"timezone": "Europe/Zurich"}),
            false,
        )
        .unwrap();
        assert_eq!(
            std::fs::read_to_string(t.path().join("etc/default/init")).unwrap(),
            "# init\nTZ=Europe/Zurich\nCMASK=022\n"
        );
        let err = testing::plan(
            &Timezone,
            t.path(),
            &rec,
            json!({"timezone": "Mars/Olympus"}),
        )
        .unwrap_err();
        assert!(err.contains("not in /usr/share/lib/zoneinfo"), "{err}");
        assert!(testing::plan(
            &Timezone,
            t.path(),
            &rec,
            json!({"timezone": "../../etc/passwd"})
        )
        .is_err());
        assert!(rec.lines().is_empty());
    }

    #[test]
    fn the_hardware_clock_stays_utc() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("etc/default")).unwrap();
        std::fs::write(t.path().join("etc/default/init"), "TZ=UTC\n").unwrap();
        // /etc/rtc_config as rtc.c's set_zone writes it after `rtc -z Europe/Zurich`.
        std::fs::write(
            t.path().join("etc/rtc_config"),
            "#\n#\tThis file (/etc/rtc_config) contains information used to manage the\n#\nzone_info=Europe/Zurich\nzone_lag=-3600\n",
        )
        .unwrap();
        let rec = Recorder::new();
        let d = json!({"timezone": "Europe/Zurich"});
        let changes = testing::plan(&Timezone, t.path(), &rec, d.clone()).unwrap();
        let summaries: Vec<&str> = changes.iter().map(|c| c.summary.as_str()).collect();
        assert_eq!(
            summaries,
            [
                "set TZ=Europe/Zurich in /etc/default/init",
                "keep the hardware clock in UTC (/etc/rtc_config has zone_info=Europe/Zurich)"
            ]
        );
        testing::apply(&Timezone, t.path(), &rec, d.clone(), false).unwrap();
        let rtc = std::fs::read_to_string(t.path().join("etc/rtc_config")).unwrap();
        assert_eq!(rtc_zone(&rtc).as_deref(), Some("UTC"));
        assert!(rtc.ends_with("zone_info=UTC\nzone_lag=0\n"), "{rtc}");
        assert_eq!(
            std::fs::read_to_string(t.path().join("etc/default/init")).unwrap(),
            "TZ=Europe/Zurich\n"
        );
        assert!(testing::plan(&Timezone, t.path(), &rec, d.clone())
            .unwrap()
            .is_empty());

        // On the running system: `rtc -z UTC`, never `rtc -z ZONE`.
        let ctx = Ctx::new(crate::rootfs::Root::new("/"), true, &rec);
        Timezone
            .apply(&ctx, &testing::input(&Timezone, d), &Change::Rtc)
            .unwrap();
        assert_eq!(ctx.take_actions(), ["would run: /usr/sbin/rtc -z UTC"]);
        assert!(rec.lines().is_empty());
    }
}
