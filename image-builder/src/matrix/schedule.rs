//! The order of a matrix's builds: chains of stages on one work dataset, and the archives
//! builds wait for.

use std::collections::{HashMap, HashSet};

use super::{Job, MatrixError};

/// Jobs grouped into chains: duplicates dropped, each chain ordered so a stage comes after
/// the stage producing its input snapshot; chains in order of first appearance.
pub fn schedule(jobs: Vec<Job>) -> Result<Vec<Vec<Job>>, MatrixError> {
    let mut seen = std::collections::HashSet::new();
    let mut chains: Vec<(String, Vec<Job>)> = Vec::new();
    for j in jobs {
        if !seen.insert(j.entry.id()) {
            continue;
        }
        let key = j.chain_key();
        match chains.iter_mut().find(|(k, _)| *k == key) {
            Some((_, c)) => c.push(j),
            None => chains.push((key, vec![j])),
        }
    }
    let chains = chains
        .into_iter()
        .map(|(key, mut rest)| {
            let mut ordered = Vec::new();
            while !rest.is_empty() {
                // First (in listed order) stage whose input no remaining stage produces.
                let ready = rest.iter().position(|j| {
                    let input = j.dataset().and_then(|d| d.input_snapshot.clone());
                    input.is_none_or(|i| {
                        !rest.iter().any(|o| {
                            o.dataset().and_then(|d| d.output_snapshot.as_deref()) == Some(&i)
                        })
                    })
                });
                match ready {
                    Some(i) => ordered.push(rest.remove(i)),
                    None => return Err(MatrixError::Cycle(key)),
                }
            }
            Ok(ordered)
        })
        .collect::<Result<Vec<_>, _>>()?;
    check_file_order(&chains)?;
    Ok(chains)
}

/// Refuses chains that can never finish: a build waiting for an archive packed by a build
/// that comes after it (in its own chain, or through other waits). Kahn's algorithm over
/// the builds, with an edge from each build to the next of its chain and from each packer
/// to each reader of its archive.
fn check_file_order(chains: &[Vec<Job>]) -> Result<(), MatrixError> {
    let jobs: Vec<&Job> = chains.iter().flatten().collect();
    let mut edges: Vec<Vec<usize>> = vec![Vec::new(); jobs.len()];
    let mut n = 0;
    for c in chains {
        for i in 1..c.len() {
            edges[n + i - 1].push(n + i);
        }
        n += c.len();
    }
    for (w, writer) in jobs.iter().enumerate() {
        let writes = writer.writes();
        for (r, reader) in jobs.iter().enumerate() {
            if r != w && reader.reads().iter().any(|f| writes.contains(f)) {
                edges[w].push(r);
            }
        }
    }
    let mut incoming = vec![0usize; jobs.len()];
    for e in edges.iter().flatten() {
        incoming[*e] += 1;
    }
    let mut ready: Vec<usize> = (0..jobs.len()).filter(|i| incoming[*i] == 0).collect();
    let mut seen = 0;
    while let Some(i) = ready.pop() {
        seen += 1;
        for &e in &edges[i] {
            incoming[e] -= 1;
            if incoming[e] == 0 {
                ready.push(e);
            }
        }
    }
    if seen == jobs.len() {
        return Ok(());
    }
    let stuck: Vec<String> = (0..jobs.len())
        .filter(|i| incoming[*i] > 0)
        .map(|i| jobs[i].entry.id())
        .collect();
    Err(MatrixError::FileCycle(stuck.join(", ")))
}

/// The archives the matrix's own builds pack, and how far their packers are.
#[derive(Debug, Default)]
pub(super) struct Archives {
    /// Per archive, how many of the builds packing it have not finished.
    left: HashMap<String, usize>,
    /// Archives a build that should pack them failed or skipped.
    failed: HashSet<String>,
}

/// Whether a build can start, as far as the archives it reads go.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Inputs {
    Ready,
    Wait,
    /// This archive's packer failed: the build is skipped.
    Missing(String),
}

impl Archives {
    pub(super) fn new<'a>(jobs: impl Iterator<Item = &'a Job>) -> Archives {
        let mut a = Archives::default();
        for j in jobs {
            for w in j.writes() {
                *a.left.entry(w).or_default() += 1;
            }
        }
        a
    }

    pub(super) fn inputs(&self, job: &Job) -> Inputs {
        let own = job.writes();
        let reads: Vec<String> = job
            .reads()
            .into_iter()
            .filter(|r| !own.contains(r))
            .collect();
        if reads
            .iter()
            .any(|r| self.left.get(r).is_some_and(|n| *n > 0))
        {
            return Inputs::Wait;
        }
        match reads.into_iter().find(|r| self.failed.contains(r)) {
            Some(r) => Inputs::Missing(r),
            None => Inputs::Ready,
        }
    }

    pub(super) fn finished(&mut self, job: &Job, ok: bool) {
        for w in job.writes() {
            if let Some(n) = self.left.get_mut(&w) {
                *n = n.saturating_sub(1);
            }
            if !ok {
                self.failed.insert(w);
            }
        }
    }
}
