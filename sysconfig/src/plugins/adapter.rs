//! The edge between the protocol's JSON and a plugin's Rust types. A plugin sees its
//! slice of the desired state as its `Input` type and hands its own `Change` type from
//! plan to apply; [`Adapter`] reads the one from `desired` and carries the other in the
//! protocol change's `data`, so the wire format stays what `protocol` documents.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};
use serde_path_to_error::Segment;

use super::{Ctx, Outcome, Plugin, PluginError};
use crate::protocol::{
    ApplyParams, ApplyResult, Change, ChangeResult, Describe, Handler, PlanParams, PlanResult,
    Status,
};
use crate::rootfs::Root;
use runner::Runner;

/// One change as a plugin plans it: what the protocol shows of it (`key`, `id`,
/// `summary`, `timeout_secs`) and the plugin's own description of what to do, which
/// travels as the protocol change's `data` and comes back to the plugin's apply.
#[derive(Debug, Clone, PartialEq)]
pub struct Planned<C> {
    pub key: &'static str,
    pub id: String,
    pub summary: String,
    pub change: C,
    pub timeout_secs: Option<u64>,
}

impl<C> Planned<C> {
    pub fn new(
        key: &'static str,
        id: impl Into<String>,
        summary: impl Into<String>,
        change: C,
    ) -> Self {
        Planned {
            key,
            id: id.into(),
            summary: summary.into(),
            change,
            timeout_secs: None,
        }
    }

    /// The same change as another plugin's type (a shared helper's change inside a
    /// plugin's own).
    pub fn map<D>(self, f: impl FnOnce(C) -> D) -> Planned<D> {
        Planned {
            key: self.key,
            id: self.id,
            summary: self.summary,
            change: f(self.change),
            timeout_secs: self.timeout_secs,
        }
    }

    /// The longest the change may take to apply, when that is longer than usual.
    pub fn timeout(mut self, d: std::time::Duration) -> Self {
        self.timeout_secs = Some(d.as_secs());
        self
    }
}

impl<C: Serialize> Planned<C> {
    /// The change as the protocol carries it.
    pub fn to_protocol(&self) -> Result<Change, PluginError> {
        let data = serde_json::to_value(&self.change).map_err(|source| PluginError::Encode {
            id: self.id.clone(),
            source,
        })?;
        Ok(Change {
            id: self.id.clone(),
            key: self.key.into(),
            summary: self.summary.clone(),
            data,
            timeout_secs: self.timeout_secs,
        })
    }
}

/// A protocol change's `data` as the plugin's change type.
pub fn change_of<C: DeserializeOwned>(c: &Change) -> Result<C, PluginError> {
    serde_json::from_value(c.data.clone()).map_err(|source| PluginError::ChangeData {
        id: c.id.clone(),
        source,
    })
}

/// The desired map as a plugin's input type. A value of the wrong type or an unknown key
/// is an error naming the key (and the field inside it) and the value.
pub fn input_of<I: DeserializeOwned>(desired: &Map<String, Value>) -> Result<I, PluginError> {
    let whole = Value::Object(desired.clone());
    serde_path_to_error::deserialize::<_, I>(&whole).map_err(|e| {
        // The path ends at the failing value, an unknown key's included.
        let segments: Vec<Segment> = e.path().iter().cloned().collect();
        PluginError::Input {
            path: path_text(&segments),
            value: value_at(&whole, &segments).map(|v| shown_value(v, &segments)),
            message: e.inner().to_string(),
        }
    })
}

fn path_text(segments: &[Segment]) -> String {
    let mut s = String::new();
    for seg in segments {
        match seg {
            Segment::Seq { index } => s.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(key);
            }
            Segment::Unknown => s.push_str(if s.is_empty() { "?" } else { ".?" }),
        }
    }
    if s.is_empty() {
        "desired state".into()
    } else {
        s
    }
}

fn value_at<'v>(mut v: &'v Value, segments: &[Segment]) -> Option<&'v Value> {
    for seg in segments {
        v = match (seg, v) {
            (Segment::Seq { index }, Value::Array(a)) => a.get(*index)?,
            (Segment::Map { key }, Value::Object(m)) => m.get(key)?,
            _ => return None,
        };
    }
    Some(v)
}

/// A value for an error message: compact JSON, password hashes redacted (the value at
/// a `password_hash` key, and any inside it), cut short.
fn shown_value(v: &Value, at: &[Segment]) -> String {
    const MAX: usize = 80;
    let in_hash = at
        .iter()
        .any(|s| matches!(s, Segment::Map { key } if key == "password_hash"));
    let mut v = if in_hash {
        Value::String("<redacted>".into())
    } else {
        v.clone()
    };
    crate::daemon::redact(&mut v);
    let text = v.to_string();
    if text.chars().count() <= MAX {
        return text;
    }
    let cut: String = text.chars().take(MAX).collect();
    format!("{cut}...")
}

/// For input fields that may be left out or be `null`: both mean the type's default
/// (an empty list), as an absent key does.
pub fn or_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Option::unwrap_or_default)
}

/// A [`Plugin`] as a protocol [`Handler`] over a runner.
pub struct Adapter<'r, P> {
    pub plugin: P,
    pub runner: &'r dyn Runner,
}

impl<P: Plugin> Handler for Adapter<'_, P> {
    type Error = PluginError;

    fn describe(&self) -> Describe {
        Describe {
            name: P::NAME.into(),
            version: env!("CARGO_PKG_VERSION").into(),
            keys: P::KEYS.iter().map(|k| k.to_string()).collect(),
        }
    }

    fn plan(&self, p: PlanParams) -> Result<PlanResult, PluginError> {
        let ctx = Ctx::new(Root::new(p.root), true, self.runner);
        let input: P::Input = input_of(&p.desired)?;
        let planned = self.plugin.plan(&ctx, &input)?;
        let changes = planned
            .iter()
            .map(Planned::to_protocol)
            .collect::<Result<_, _>>()?;
        Ok(PlanResult { changes })
    }

    fn apply(&self, p: ApplyParams) -> Result<ApplyResult, PluginError> {
        let ctx = Ctx::new(Root::new(p.root), p.dry_run, self.runner);
        let input: P::Input = input_of(&p.desired)?;
        let mut results = Vec::new();
        for c in &p.changes {
            let outcome =
                change_of::<P::Change>(c).and_then(|t| self.plugin.apply(&ctx, &input, &t));
            let actions = ctx.take_actions();
            let (status, message) = match outcome {
                Ok(Outcome::Done) => (Status::Ok, None),
                Ok(Outcome::Skipped(m)) => (Status::Skipped, Some(m)),
                Err(e) => (Status::Failed, Some(e.to_string())),
            };
            results.push(ChangeResult {
                id: c.id.clone(),
                status,
                message,
                actions,
            });
        }
        Ok(ApplyResult { results })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct In {
        #[serde(default)]
        name: Option<String>,
        #[serde(default, deserialize_with = "or_default")]
        list: Vec<Item>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Item {
        port: u16,
        #[serde(default)]
        password_hash: Option<String>,
    }

    fn err(v: Value) -> String {
        input_of::<In>(v.as_object().unwrap())
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn an_ill_typed_value_is_named_by_key_and_value() {
        assert_eq!(
            err(json!({"name": 5})),
            "name = 5: invalid type: integer `5`, expected a string"
        );
        assert_eq!(
            err(json!({"list": [{"port": 22}, {"port": "ssh"}]})),
            "list[1].port = \"ssh\": invalid type: string \"ssh\", expected u16"
        );
        assert_eq!(
            err(json!({"list": {"port": 22}})),
            "list = {\"port\":22}: invalid type: map, expected a sequence"
        );
    }

    #[test]
    fn an_unknown_key_is_named_with_its_value_and_hashes_stay_hidden() {
        let e = err(json!({"list": [{"port": 1, "prot": "tcp"}]}));
        assert!(
            e.starts_with("list[0].prot = \"tcp\": unknown field `prot`, expected"),
            "{e}"
        );
        let e = err(json!({"list": [{"port": 1, "password_hash": 7}]}));
        assert!(
            e.starts_with("list[0].password_hash = \"<redacted>\": invalid type"),
            "{e}"
        );
        let e = err(json!({"list": [{"password_hash": "$6$salt$hash"}]}));
        assert!(!e.contains("$6$"), "{e}");
        assert!(e.starts_with("list[0]"), "{e}");
    }

    #[test]
    fn null_and_absent_are_the_default() {
        let i: In = input_of(json!({"list": null}).as_object().unwrap()).unwrap();
        assert!(i.list.is_empty() && i.name.is_none());
        let i: In = input_of(&Map::new()).unwrap();
        assert!(i.list.is_empty());
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(tag = "op", rename_all = "kebab-case")]
    enum Step {
        Create { name: String, size: Option<u64> },
        Boot,
    }

    #[test]
    fn a_change_round_trips_through_the_protocol_json() {
        let planned = Planned::new(
            "things",
            "web/create",
            "create web",
            Step::Create {
                name: "web".into(),
                size: Some(3),
            },
        )
        .timeout(std::time::Duration::from_secs(60));
        let wire = serde_json::to_string(&planned.to_protocol().unwrap()).unwrap();
        assert_eq!(
            wire,
            r#"{"id":"web/create","key":"things","summary":"create web","data":{"op":"create","name":"web","size":3},"timeout_secs":60}"#
        );
        let back: Change = serde_json::from_str(&wire).unwrap();
        assert_eq!(change_of::<Step>(&back).unwrap(), planned.change);
        let boot = Planned::new("things", "web/boot", "boot web", Step::Boot);
        let c = boot.to_protocol().unwrap();
        assert_eq!(c.data, json!({"op": "boot"}));
        assert_eq!(c.timeout_secs, None);
        assert_eq!(change_of::<Step>(&c).unwrap(), Step::Boot);
    }

    #[test]
    fn data_from_elsewhere_fails_that_change_by_id() {
        let c = Change {
            id: "x/1".into(),
            key: "things".into(),
            summary: String::new(),
            data: json!({"op": "explode"}),
            timeout_secs: None,
        };
        let e = change_of::<Step>(&c).unwrap_err().to_string();
        assert!(
            e.starts_with(
                "change x/1: its data is not a change of this plugin: unknown variant `explode`"
            ),
            "{e}"
        );
    }
}
