//! A build error as `--json` prints it: one object with the event `error`, the error's
//! kind (its variant, in snake case), its fields by name, and the whole message.

use serde_json::{json, Map, Value};

use super::error::BuildError;

impl BuildError {
    /// The error's kind: stable, machine-readable, one per variant.
    pub fn kind(&self) -> &'static str {
        use BuildError::*;
        match self {
            Invalid(_) => "invalid",
            Preflight(_) => "preflight",
            Zfs(_) => "zfs",
            Device(_) => "device",
            Io { .. } => "io",
            Locked { .. } => "locked",
            Step { .. } => "step",
            Journal(_) => "journal",
            Run(_) => "command",
            NoRoot { .. } => "no_root",
            EarlierBuild { .. } => "earlier_build",
            Undo { .. } => "undo",
            NotMounted { .. } => "not_mounted",
            OpenRoot { .. } => "open_root",
            RemoveTree(_) => "remove_tree",
            Sources(_) => "sources",
            NoCheckpoint { .. } => "no_checkpoint",
            NoWork { .. } => "no_work",
            NoFromWork { .. } => "no_from_work",
            FromNoMatch { .. } => "from_no_match",
            FromGap { .. } => "from_gap",
            DatasetOnly { .. } => "dataset_only",
            NoStage { .. } => "no_stage",
            EarlierShell { .. } => "earlier_shell",
            ShellClone { .. } => "shell_clone",
            NothingToOpen { .. } => "nothing_to_open",
            NoCheckpointAfter { .. } => "no_checkpoint_after",
            InputGone { .. } => "input_gone",
            NotOurs { .. } => "not_ours",
            NoInput { .. } => "no_input",
            BuiltElsewhere { .. } => "built_elsewhere",
            Uuid(_) => "uuid",
            PoolSize { .. } => "pool_size",
            Label { .. } => "label",
            PoolFailed { .. } => "pool_failed",
            NotAssignment { .. } => "not_assignment",
            NoPartition { .. } => "no_partition",
            ChecksumThread => "checksum_thread",
            Pack { .. } => "pack",
            HybridWithoutUefi => "hybrid_without_uefi",
            LofiPath(_) => "lofi_path",
            BootBlock { .. } => "boot_block",
            NoEfiEntry => "no_efi_entry",
            Convert { .. } => "convert",
            Store(_) => "store",
            StoreRequired { .. } => "store_required",
            NotInStore { .. } => "not_in_store",
            Input { .. } => "input",
            Producers { .. } => "producers",
            InputCycle { .. } => "input_cycle",
            Interrupted => "interrupted",
        }
    }

    /// The values the error names, by field (the cause's text as `cause`).
    pub fn fields(&self) -> Map<String, Value> {
        use BuildError::*;
        let v = match self {
            Invalid(n) => json!({ "errors": n }),
            Io { path, source } => json!({ "path": path, "cause": source.to_string() }),
            Locked { lock, holder } => json!({ "lock": lock, "holder": holder }),
            Step {
                index,
                t,
                location,
                source,
            } => json!({
                "index": index,
                "step": t,
                "location": location,
                "cause": source.to_string(),
            }),
            NoRoot { root } => json!({ "root": root }),
            EarlierBuild { failed }
            | Undo { failed }
            | EarlierShell { failed }
            | ShellClone { failed } => json!({ "failed": failed }),
            FromNoMatch { from, work } => json!({ "from": from, "work": work }),
            FromGap {
                from,
                checkpoint,
                index,
                gap,
            } => json!({ "from": from, "checkpoint": checkpoint, "index": index, "gap": gap }),
            DatasetOnly { what, why } => json!({ "what": what, "why": why }),
            NoStage { work } => json!({ "work": work }),
            NothingToOpen { what, checkpoints } => {
                json!({ "what": what, "checkpoints": checkpoints })
            }
            NoCheckpointAfter {
                index,
                step,
                checkpoints,
            } => json!({ "index": index, "step": step, "checkpoints": checkpoints }),
            NotMounted {
                dataset,
                mountpoint,
            } => json!({ "dataset": dataset, "mountpoint": mountpoint }),
            OpenRoot { what, dir, source } => {
                json!({ "what": what, "dir": dir, "cause": source.to_string() })
            }
            RemoveTree(source) => {
                json!({ "path": source.image_path(), "cause": source.to_string() })
            }
            NoCheckpoint { work } | NoWork { work } | NoFromWork { work } => {
                json!({ "work": work })
            }
            InputGone { work, snapshot } => json!({ "work": work, "snapshot": snapshot }),
            NotOurs { work, why } => json!({ "work": work, "why": why }),
            NoInput { snapshot } => json!({ "snapshot": snapshot }),
            BuiltElsewhere { snapshot, how } => json!({ "snapshot": snapshot, "how": how }),
            PoolSize { size, source } => json!({ "size_mib": size, "cause": source.to_string() }),
            Label { path, source } => json!({ "path": path, "cause": source.to_string() }),
            PoolFailed { pool, health } => json!({ "pool": pool, "health": health }),
            NotAssignment { field, entry } => json!({ "field": field, "entry": entry }),
            NoPartition { device } => json!({ "device": device }),
            Pack { path, source } => json!({ "path": path, "cause": source.to_string() }),
            LofiPath(path) => json!({ "path": path }),
            BootBlock { field, path, why } => json!({ "field": field, "path": path, "why": why }),
            Convert { format, source } => json!({ "format": format, "cause": source.to_string() }),
            StoreRequired { what, source } => json!({ "what": what, "cause": source.to_string() }),
            NotInStore {
                template,
                store,
                tag,
            } => json!({ "template": template, "store": store, "tag": tag }),
            Input {
                needed_by,
                what,
                template,
                source,
            } => json!({
                "needed_by": needed_by,
                "what": what,
                "template": template,
                "cause": source.to_string(),
            }),
            Producers {
                needed_by,
                what,
                candidates,
            } => json!({ "needed_by": needed_by, "what": what, "candidates": candidates }),
            InputCycle { chain } => json!({ "chain": chain }),
            Preflight(_) | Zfs(_) | Device(_) | Journal(_) | Run(_) | Sources(_) | Uuid(_)
            | ChecksumThread | HybridWithoutUefi | NoEfiEntry | Store(_) | Interrupted => {
                json!({})
            }
        };
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    /// The `--json` error event.
    pub fn to_json(&self) -> Value {
        json!({
            "event": "error",
            "kind": self.kind(),
            "fields": self.fields(),
            "message": self.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_event_names_its_kind_and_fields() {
        let e = BuildError::InputGone {
            work: "p/w".into(),
            snapshot: "p/w@in".into(),
        };
        let v = e.to_json();
        assert_eq!(v["event"], "error");
        assert_eq!(v["kind"], "input_gone");
        assert_eq!(v["fields"], json!({ "work": "p/w", "snapshot": "p/w@in" }));
        assert_eq!(v["message"], e.to_string());
    }

    #[test]
    fn causes_are_text_never_debug() {
        let e = BuildError::Io {
            path: "/x/y".into(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        };
        let v = e.to_json();
        assert_eq!(v["kind"], "io");
        assert_eq!(v["fields"]["path"], "/x/y");
        let text = v.to_string();
        assert!(!text.contains("Kind(") && !text.contains("Os {"), "{text}");
    }
}
