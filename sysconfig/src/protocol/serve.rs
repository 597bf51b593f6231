//! The plugin side of the protocol: read request lines, answer each with one line.

use std::io::{BufRead, Write};

use serde_json::Value;

use super::{ApplyParams, Describe, Envelope, PlanParams, Response, VERSION};

/// What a plugin implements; [`serve`] does the wire work. An error's message becomes
/// the response's `error`.
pub trait Handler {
    type Error: std::fmt::Display;
    fn describe(&self) -> Describe;
    fn plan(&self, params: PlanParams) -> Result<super::PlanResult, Self::Error>;
    fn apply(&self, params: ApplyParams) -> Result<super::ApplyResult, Self::Error>;
}

/// Answers every request line on `input` until end of input. Returns an I/O error only
/// when the output cannot be written.
pub fn serve<H: Handler>(
    handler: &H,
    input: impl BufRead,
    mut output: impl Write,
) -> std::io::Result<()> {
    for line in input.lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let response = answer(handler, &line);
        let mut text = serde_json::to_string(&response).unwrap_or_else(|e| {
            format!("{{\"protocol\":{VERSION},\"error\":\"cannot encode response: {e}\"}}")
        });
        text.push('\n');
        output.write_all(text.as_bytes())?;
        output.flush()?;
    }
    Ok(())
}

fn answer<H: Handler>(handler: &H, line: &str) -> Response {
    let value: Value = match serde_json::from_str(line) {
        Ok(v) => v,
        Err(e) => return error(format!("request is not JSON: {e}")),
    };
    match value.get("protocol").and_then(Value::as_u64) {
        Some(v) if v == u64::from(VERSION) => {}
        Some(v) => {
            return error(format!(
                "protocol version {v} is not supported (this plugin speaks {VERSION})"
            ))
        }
        None => return error("request has no protocol version".into()),
    }
    let envelope: Envelope = match serde_json::from_value(value) {
        Ok(e) => e,
        Err(e) => return error(format!("bad request: {e}")),
    };
    let result = match envelope.request {
        super::Request::Describe => {
            serde_json::to_value(handler.describe()).map_err(|e| e.to_string())
        }
        super::Request::Plan(p) => handler
            .plan(p)
            .map_err(|e| e.to_string())
            .and_then(|r| serde_json::to_value(r).map_err(|e| e.to_string())),
        super::Request::Apply(p) => handler
            .apply(p)
            .map_err(|e| e.to_string())
            .and_then(|r| serde_json::to_value(r).map_err(|e| e.to_string())),
    };
    match result {
        Ok(v) => Response {
            protocol: VERSION,
            result: Some(v),
            error: None,
        },
        Err(e) => error(e),
    }
}

fn error(msg: String) -> Response {
    Response {
        protocol: VERSION,
        result: None,
        error: Some(msg),
    }
}
