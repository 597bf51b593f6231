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
