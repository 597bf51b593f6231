//! `shadow`: set a user's password hash in the image's `/etc/shadow`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::StepArgs;
use crate::template::check::{Checker, Expander};

/// Set the password field of `username` in `/etc/shadow` (the file is rewritten only when
/// it changes, mode 0400). The hash is stored as written and never macro-expanded, since
/// crypt hashes such as `$5$salt$...` are full of `$`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Shadow {
    /// The user, who must appear exactly once in `/etc/shadow`.
    pub username: String,
    /// A crypt(3C) hash, e.g. `$5$salt$hash`, or empty for no password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

impl StepArgs for Shadow {
    fn expand(&self, _x: &mut Expander) -> Self {
        self.clone()
    }

    fn check(&self, c: &mut Checker) {
        if self.username.is_empty() || self.username.contains(':') {
            c.error("username", format!("invalid user name {:?}", self.username));
        }
        if let Some(p) = &self.password {
            if p.contains([':', '\n']) {
                c.error(
                    "password",
                    "a shadow password field cannot contain `:` or a newline",
                );
            }
        }
    }
}

use super::exec::{Execute, StepCx, StepError};

impl Execute for Shadow {
    fn execute(&self, cx: &StepCx) -> Result<(), StepError> {
        const SHADOW: &str = "/etc/shadow";
        let text = String::from_utf8(cx.root.read(SHADOW)?)
            .map_err(|_| StepError::msg("/etc/shadow is not UTF-8 text"))?;
        let mut lines: Vec<Vec<String>> = Vec::new();
        for (i, l) in text.lines().enumerate() {
            let f: Vec<String> = l.split(':').map(str::to_string).collect();
            if f.len() != 9 {
                return Err(StepError::msg(format!(
                    "/etc/shadow line {} has {} fields, expected 9",
                    i + 1,
                    f.len()
                )));
            }
            lines.push(f);
        }
        let matches = lines.iter().filter(|f| f[0] == self.username).count();
        if matches != 1 {
            return Err(StepError::msg(format!(
                "found {matches} entries for user {:?} in /etc/shadow, expected exactly 1",
                self.username
            )));
        }
        let Some(password) = &self.password else {
            return Ok(());
        };
        for f in lines.iter_mut().filter(|f| f[0] == self.username) {
            f[1] = password.clone();
        }
        let mut new: String = lines
            .iter()
            .map(|f| f.join(":"))
            .collect::<Vec<_>>()
            .join("\n");
        new.push('\n');
        if new != text {
            cx.root.write_atomic(SHADOW, new.as_bytes(), 0o400)?;
            cx.root.set_owner(SHADOW, Some(0), Some(0))?;
            cx.root.set_mode(SHADOW, 0o400)?;
        }
        Ok(())
    }
}
