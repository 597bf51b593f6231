//! timezone: illumos keeps the system time zone in the `TZ=` line of /etc/default/init
//! (TIMEZONE(5); the line must stand alone, without leading blanks). Solaris 11's
//! `svc:/system/timezone` service does not exist on illumos. On a running x86 system the
//! real-time clock's zone is updated with `rtc -z ZONE`, then `rtc -c` applies the
//! daylight-saving correction, as TIMEZONE(5) asks.

use runner::Cmd;
use serde_json::{Map, Value};

use super::{change, typed, Ctx, Outcome, Plugin};
use crate::protocol::Change;

pub struct Timezone;

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

    fn plan(&self, ctx: &Ctx, desired: &Map<String, Value>) -> Result<Vec<Change>, String> {
        let Some(tz) = typed::<String>(desired, "timezone")? else {
            return Ok(vec![]);
        };
        if !valid(&tz) {
            return Err(format!("timezone {tz:?} is not a zoneinfo name"));
        }
        let zoneinfo = "/usr/share/lib/zoneinfo";
        if ctx.root.exists(zoneinfo).unwrap_or(false)
            && !ctx.root.exists(format!("{zoneinfo}/{tz}")).unwrap_or(false)
        {
            return Err(format!("timezone {tz:?} is not in {zoneinfo}"));
        }
        let text = ctx.read("/etc/default/init")?.unwrap_or_default();
        if init_with(&text, &tz) == text {
            return Ok(vec![]);
        }
        Ok(vec![change(
            "timezone",
            "tz",
            format!("set TZ={tz} in /etc/default/init"),
            Value::Null,
        )])
    }

    fn apply(
        &self,
        ctx: &Ctx,
        desired: &Map<String, Value>,
        _c: &Change,
    ) -> Result<Outcome, String> {
        let tz = typed::<String>(desired, "timezone")?.ok_or("timezone is not set")?;
        let text = ctx.read("/etc/default/init")?.unwrap_or_default();
        ctx.write(
            "/etc/default/init",
            init_with(&text, &tz).as_bytes(),
            0o644,
            None,
        )?;
        if ctx.live() && ctx.root.exists("/usr/sbin/rtc").unwrap_or(false) {
            ctx.run(Cmd::new("/usr/sbin/rtc").args(["-z", &tz]))?;
            ctx.run(Cmd::new("/usr/sbin/rtc").arg("-c"))?;
        }
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
}
