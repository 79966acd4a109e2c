//! `dicom-bench`: the DICOMweb load of `make bench-dicom`, the same workload against each target.
//!
//! Instances are made with dicom-rs from one template (a secondary capture with the usual
//! patient/study/series/image attributes) with new UIDs: small (~10 KB, 70x70 16-bit pixels)
//! and large (500x512 16-bit pixels, ~500 KB). Every request body is built before any timing,
//! and the same bodies go to every target. Per target, in order:
//!
//! 1. STOW-RS `POST studies` (multipart/related; type="application/dicom") of small, then large
//!    instances at concurrency 1 and 8 with 1 and 10 instances per request (each row stores
//!    new studies: 10 instances in 2 series per study);
//! 2. QIDO-RS `GET studies?...` by PatientID, by a 10-day StudyDate range and by
//!    ModalitiesInStudy (each with `limit=100`), at concurrency 1 and 8;
//! 3. WADO-RS instance retrieval (small, large) and study metadata, at concurrency 1 and 8.
//!
//! Each row reports items/s, MB/s (request bodies for STOW, response bodies otherwise),
//! p50/p99 request latency, and the CPU seconds the target's server processes and this client
//! spent on it; the table puts targets side by side with the first target's ratio to the
//! others and whether the bars hold. A row whose requests fail reads
//! `n/a (status)`, and the run goes on.
//!
//! UIDs come from `--seed` (random by default). With the seed and sizes of an earlier run
//! whose instances the targets still hold, `--reads-only` skips the STOW rows and measures
//! the reads against that set; `--rows` keeps only some rows (by label prefix).

use hds_bench::procfs::{client_ports, cpu_seconds};
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use clap::Parser;
use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use dicom_object::{FileMetaTableBuilder, InMemDicomObject};
use futures::{StreamExt, TryStreamExt};

#[derive(Parser)]
struct Args {
    /// `name=URL[,pid=PID]...[,pg=PORT]`: the DICOMweb base URL (where `studies` is), the
    /// server processes whose CPU counts, and `pg=PORT` to count the PostgreSQL backends
    /// serving those processes (plus PostgreSQL's background processes). The first target is
    /// the one whose ratio to the others is printed.
    #[arg(long = "target", required = true)]
    targets: Vec<String>,
    /// Small instances (~10 KB) stored per STOW row.
    #[arg(long, default_value_t = 1000)]
    small: usize,
    /// Large instances (~500 KB) stored per STOW row.
    #[arg(long, default_value_t = 200)]
    large: usize,
    /// Queries per QIDO row.
    #[arg(long, default_value_t = 200)]
    queries: usize,
    /// Requests per WADO and metadata row.
    #[arg(long, default_value_t = 500)]
    reads: usize,
    /// Seed of the UIDs (random by default): the same seed and sizes make the same instances,
    /// so a later run with `--reads-only` finds what an earlier one stored.
    #[arg(long)]
    seed: Option<u64>,
    /// Skip the STOW rows: the targets hold the set that a run with the same `--seed`,
    /// `--small` and `--large` stored (bench/dicom.sh's `DICOM_BENCH_STATE`).
    #[arg(long)]
    reads_only: bool,
    /// Only the rows whose labels start with one of these comma-separated prefixes, e.g.
    /// `QIDO,study metadata` (all rows by default).
    #[arg(long, value_delimiter = ',')]
    rows: Vec<String>,
}

struct Target {
    name: String,
    base: String,
    pids: Vec<u32>,
    pg_port: Option<u16>,
}

fn parse_target(s: &str) -> anyhow::Result<Target> {
    let (name, rest) = s
        .split_once('=')
        .context("--target name=URL[,pid=PID]...[,pg=PORT]")?;
    let mut parts = rest.split(',');
    let base = parts
        .next()
        .context("URL")?
        .trim_end_matches('/')
        .to_owned();
    let mut t = Target {
        name: name.to_owned(),
        base,
        pids: Vec::new(),
        pg_port: None,
    };
    for p in parts {
        if let Some(pid) = p.strip_prefix("pid=") {
            t.pids.push(pid.parse().context("pid")?);
        } else if let Some(port) = p.strip_prefix("pg=") {
            t.pg_port = Some(port.parse().context("pg port")?);
        } else {
            anyhow::bail!("unknown target option {p:?}");
        }
    }
    Ok(t)
}

// ---------------------------------------------------------------------------------------------
// CPU accounting from /proc

/// CPU seconds so far of every process that counts for `t`, by pid: its own processes, and
/// with `pg`, the PostgreSQL backends serving them plus PostgreSQL's background processes
/// (other clients' backends on a shared server are left out).
fn cpu_snapshot(t: &Target) -> HashMap<u32, f64> {
    let mut out: HashMap<u32, f64> = t
        .pids
        .iter()
        .filter_map(|&p| Some((p, cpu_seconds(p)?)))
        .collect();
    let Some(pg_port) = t.pg_port else {
        return out;
    };
    let ours: HashSet<String> = t
        .pids
        .iter()
        .flat_map(|&p| client_ports(p, pg_port))
        .map(|port| format!("({port})"))
        .collect();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for pid in dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok()) {
        let is_pg = std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .is_ok_and(|c| c.trim() == "postgres");
        if !is_pg {
            continue;
        }
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline);
        // Backends show their client as `host(port)` or `[local]`.
        let backend = cmdline.contains('(') || cmdline.contains("[local]");
        if !backend || ours.iter().any(|o| cmdline.contains(o.as_str())) {
            out.extend(cpu_seconds(pid).map(|c| (pid, c)));
        }
    }
    out
}

/// CPU spent between two snapshots (a process gone by the second one is left out).
fn cpu_spent(before: &HashMap<u32, f64>, after: &HashMap<u32, f64>) -> f64 {
    after
        .iter()
        .map(|(pid, c)| (c - before.get(pid).copied().unwrap_or(0.0)).max(0.0))
        .sum()
}

/// Waits (at most 3 s) until the target's processes are idle, so that work a row leaves
/// behind (an outbox relay, a flush) counts for that row and not the next. Returns the last
/// snapshot.
async fn settle(t: &Target) -> HashMap<u32, f64> {
    let mut last = cpu_snapshot(t);
    for _ in 0..15 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = cpu_snapshot(t);
        let busy = cpu_spent(&last, &now);
        last = now;
        if busy < 0.02 {
            break;
        }
    }
    last
}

// ---------------------------------------------------------------------------------------------
// Synthetic instances

const SECONDARY_CAPTURE: &str = "1.2.840.10008.5.1.4.1.1.7";
const EXPLICIT_LE: &str = "1.2.840.10008.1.2.1";
const MODALITIES: [&str; 12] = [
    "CT", "MR", "US", "CR", "DX", "MG", "NM", "PT", "XA", "RF", "OT", "ES",
];
const INSTANCES_PER_STUDY: usize = 10;
const INSTANCES_PER_SERIES: usize = 5;

/// The UIDs of a run: `2.25.` and a version 4 UUID made from the run's seed and a counter
/// (splitmix64), so that a seed gives the same UIDs in the same order.
struct Uids {
    seed: u64,
    next: u64,
}

impl Uids {
    fn mix(mut z: u64) -> u64 {
        z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn new_uid(&mut self) -> String {
        self.next += 1;
        let a = Self::mix(self.seed ^ Self::mix(self.next));
        let b = Self::mix(a ^ self.next);
        let bytes = ((u128::from(a) << 64) | u128::from(b)).to_be_bytes();
        let uuid = uuid::Builder::from_random_bytes(bytes).into_uuid();
        format!("2.25.{}", uuid.as_u128())
    }
}

/// The study `g` (numbered across the whole run): its patient, date and the modality of each
/// of its two series. Every patient has two studies, every date one study, and a modality is
/// in 2 of 12 studies.
struct Study {
    uid: String,
    patient: String,
    date: String,
    modalities: [&'static str; 2],
}

fn date_of(g: usize) -> String {
    format!(
        "{}{:02}{:02}",
        2010 + g / 336,
        (g / 28) % 12 + 1,
        g % 28 + 1
    )
}

fn study(g: usize, uids: &mut Uids) -> Study {
    Study {
        uid: uids.new_uid(),
        patient: format!("PAT-{:05}", g / 2),
        date: date_of(g),
        modalities: [MODALITIES[g % 12], MODALITIES[(g + 5) % 12]],
    }
}

fn template(rows: u16, columns: u16) -> InMemDicomObject {
    let text = |tag, vr, v: &str| DataElement::new(tag, vr, PrimitiveValue::from(v));
    let us = |tag, v: u16| DataElement::new(tag, VR::US, PrimitiveValue::from(v));
    let pixels: Vec<u16> = (0..rows as usize * columns as usize)
        .map(|i| ((i * 7919) % 4096) as u16)
        .collect();
    InMemDicomObject::from_element_iter([
        text(tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 100"),
        text(tags::SOP_CLASS_UID, VR::UI, SECONDARY_CAPTURE),
        text(tags::STUDY_TIME, VR::TM, "101500"),
        text(tags::ACCESSION_NUMBER, VR::SH, "ACC0001"),
        text(tags::CONVERSION_TYPE, VR::CS, "WSD"),
        text(tags::MANUFACTURER, VR::LO, "hds bench"),
        text(tags::INSTITUTION_NAME, VR::LO, "General Hospital"),
        text(tags::REFERRING_PHYSICIAN_NAME, VR::PN, "Smith^John"),
        text(tags::STUDY_DESCRIPTION, VR::LO, "Synthetic benchmark study"),
        text(tags::SERIES_DESCRIPTION, VR::LO, "Synthetic series"),
        text(tags::PATIENT_NAME, VR::PN, "Doe^Jane"),
        text(tags::PATIENT_BIRTH_DATE, VR::DA, "19700101"),
        text(tags::PATIENT_SEX, VR::CS, "F"),
        text(tags::STUDY_ID, VR::SH, "1"),
        text(tags::SERIES_NUMBER, VR::IS, "1"),
        text(tags::INSTANCE_NUMBER, VR::IS, "1"),
        us(tags::SAMPLES_PER_PIXEL, 1),
        text(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "MONOCHROME2"),
        us(tags::ROWS, rows),
        us(tags::COLUMNS, columns),
        us(tags::BITS_ALLOCATED, 16),
        us(tags::BITS_STORED, 12),
        us(tags::HIGH_BIT, 11),
        us(tags::PIXEL_REPRESENTATION, 0),
        DataElement::new(tags::PIXEL_DATA, VR::OW, PrimitiveValue::U16(pixels.into())),
    ])
}

struct Instance {
    study: usize,
    series: String,
    sop: String,
    bytes: Bytes,
}

/// The instances of `studies` (global numbers), 10 per study in 2 series, from `template`.
fn instances(
    template: &InMemDicomObject,
    studies: &[(usize, Study)],
    uids: &mut Uids,
) -> anyhow::Result<Vec<Instance>> {
    let text = |tag, vr, v: &str| DataElement::new(tag, vr, PrimitiveValue::from(v));
    let mut out = Vec::new();
    for (g, s) in studies {
        let series = [uids.new_uid(), uids.new_uid()];
        for i in 0..INSTANCES_PER_STUDY {
            let k = i / INSTANCES_PER_SERIES;
            let sop = uids.new_uid();
            let mut obj = template.clone();
            obj.put(text(tags::SOP_INSTANCE_UID, VR::UI, &sop));
            obj.put(text(tags::STUDY_INSTANCE_UID, VR::UI, &s.uid));
            obj.put(text(tags::SERIES_INSTANCE_UID, VR::UI, &series[k]));
            obj.put(text(tags::PATIENT_ID, VR::LO, &s.patient));
            obj.put(text(tags::STUDY_DATE, VR::DA, &s.date));
            obj.put(text(tags::SERIES_DATE, VR::DA, &s.date));
            obj.put(text(tags::MODALITY, VR::CS, s.modalities[k]));
            obj.put(text(tags::ACCESSION_NUMBER, VR::SH, &format!("ACC{g:06}")));
            obj.put(text(tags::SERIES_NUMBER, VR::IS, &(k + 1).to_string()));
            obj.put(text(tags::INSTANCE_NUMBER, VR::IS, &(i + 1).to_string()));
            let meta = FileMetaTableBuilder::new()
                .transfer_syntax(EXPLICIT_LE)
                .media_storage_sop_class_uid(SECONDARY_CAPTURE)
                .media_storage_sop_instance_uid(&sop);
            let mut bytes = Vec::new();
            obj.with_meta(meta)?.write_all(&mut bytes)?;
            out.push(Instance {
                study: *g,
                series: series[k].clone(),
                sop,
                bytes: bytes.into(),
            });
        }
    }
    Ok(out)
}

/// A multipart/related body of DICOM parts, and its Content-Type.
fn multipart(parts: &[&Instance]) -> (String, Bytes) {
    let boundary = format!("b{}", uuid::Uuid::new_v4().simple());
    let mut body = Vec::new();
    for p in parts {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Type: application/dicom\r\n\r\n").as_bytes(),
        );
        body.extend_from_slice(&p.bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (
        format!("multipart/related; type=\"application/dicom\"; boundary={boundary}"),
        body.into(),
    )
}

/// A small deterministic generator (the same queries for every target).
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

// ---------------------------------------------------------------------------------------------
// Rows

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Stow,
    Qido,
    Get,
}

/// One request of a row: a path below the target's base, and a body for STOW.
struct Request {
    path: String,
    body: Option<(String, Bytes)>,
}

/// The bars of issue 4: the first target's throughput over the second's.
#[derive(Clone, Copy)]
enum Bar {
    None,
    AtLeast(f64),
}

struct Row {
    label: String,
    kind: Kind,
    accept: &'static str,
    concurrency: usize,
    /// Items (instances, queries, studies) a request counts for.
    items_per_request: usize,
    requests: Vec<Request>,
    bar: Bar,
}

struct Measured {
    items_per_s: f64,
    mb_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    server_cpu: f64,
    client_cpu: f64,
    /// QIDO: results (array entries) per query.
    results_per_request: f64,
}

/// The answer to one request: its time, the body bytes that count (sent for STOW, received
/// otherwise), and the number of results of a QIDO query.
async fn one(
    client: &reqwest::Client,
    base: &str,
    row: &Row,
    req: &Request,
) -> Result<(Duration, u64, usize), String> {
    let url = format!("{base}{}", req.path);
    let started = Instant::now();
    let builder = match &req.body {
        Some((content_type, body)) => client
            .post(&url)
            .header("content-type", content_type)
            .body(body.clone()),
        None => client.get(&url),
    };
    let mut res = builder
        .header("accept", row.accept)
        .send()
        .await
        .map_err(|e| format!("error: {e}"))?;
    let status = res.status();
    match row.kind {
        Kind::Stow => {
            let body = res.bytes().await.map_err(|e| format!("error: {e}"))?;
            // A FailedSOPSequence with items (Orthanc always sends the attribute, empty).
            let failed = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| Some(!v.get("00081198")?.get("Value")?.as_array()?.is_empty()))
                .unwrap_or(false);
            if status != reqwest::StatusCode::OK || failed {
                return Err(if failed && status.is_success() {
                    format!("{} with FailedSOPSequence", status.as_u16())
                } else {
                    status.as_u16().to_string()
                });
            }
            let sent = req.body.as_ref().map_or(0, |(_, b)| b.len() as u64);
            Ok((started.elapsed(), sent, 0))
        }
        Kind::Qido => {
            let body = res.bytes().await.map_err(|e| format!("error: {e}"))?;
            if !status.is_success() {
                return Err(status.as_u16().to_string());
            }
            let elapsed = started.elapsed();
            let results = if body.is_empty() {
                0
            } else {
                serde_json::from_slice::<Vec<serde::de::IgnoredAny>>(&body)
                    .map_err(|e| format!("{} with a body that is no JSON array: {e}", status))?
                    .len()
            };
            Ok((elapsed, body.len() as u64, results))
        }
        Kind::Get => {
            let mut received = 0u64;
            while let Some(chunk) = res.chunk().await.map_err(|e| format!("error: {e}"))? {
                received += chunk.len() as u64;
            }
            if !status.is_success() {
                return Err(status.as_u16().to_string());
            }
            Ok((started.elapsed(), received, 0))
        }
    }
}

async fn run_row(client: &reqwest::Client, t: &Target, row: &Row) -> Result<Measured, String> {
    if row.requests.is_empty() {
        return Err("nothing to send".into());
    }
    let cpu_before = cpu_snapshot(t);
    let client_before = cpu_seconds(std::process::id()).unwrap_or(0.0);
    let started = Instant::now();
    let answers: Vec<(Duration, u64, usize)> = futures::stream::iter(&row.requests)
        .map(|req| one(client, &t.base, row, req))
        .buffer_unordered(row.concurrency)
        .try_collect()
        .await?;
    let wall = started.elapsed().as_secs_f64();
    let client_cpu = cpu_seconds(std::process::id()).unwrap_or(0.0) - client_before;
    let cpu_after = settle(t).await;
    let mut times: Vec<Duration> = answers.iter().map(|a| a.0).collect();
    times.sort();
    let at =
        |q: f64| times[((times.len() as f64 - 1.0) * q).round() as usize].as_secs_f64() * 1000.0;
    let bytes: u64 = answers.iter().map(|a| a.1).sum();
    let results: usize = answers.iter().map(|a| a.2).sum();
    Ok(Measured {
        items_per_s: (row.requests.len() * row.items_per_request) as f64 / wall,
        mb_per_s: bytes as f64 / 1e6 / wall,
        p50_ms: at(0.5),
        p99_ms: at(0.99),
        server_cpu: cpu_spent(&cpu_before, &cpu_after),
        client_cpu,
        results_per_request: results as f64 / answers.len() as f64,
    })
}

const DICOM_JSON: &str = "application/dicom+json";
const MULTIPART_DICOM: &str = "multipart/related; type=\"application/dicom\"; transfer-syntax=*";

fn stow_rows(size: &str, sets: Vec<Vec<Instance>>, bar: Bar) -> Vec<Row> {
    let shapes = [(1, 1), (1, 10), (8, 1), (8, 10)];
    shapes
        .iter()
        .zip(sets)
        .map(|(&(concurrency, per_request), set)| {
            let requests = set
                .chunks(per_request)
                .map(|chunk| {
                    let parts: Vec<&Instance> = chunk.iter().collect();
                    Request {
                        path: "/studies".into(),
                        body: Some(multipart(&parts)),
                    }
                })
                .collect();
            Row {
                label: format!("STOW {size} c{concurrency} x{per_request} (instances)"),
                kind: Kind::Stow,
                accept: DICOM_JSON,
                concurrency,
                items_per_request: per_request,
                requests,
                bar,
            }
        })
        .collect()
}

fn fmt_ms(m: &Measured) -> String {
    format!("{:.1}/{:.1}", m.p50_ms, m.p99_ms)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let targets: Vec<Target> = args
        .targets
        .iter()
        .map(|s| parse_target(s))
        .collect::<Result<_, _>>()?;

    // Bodies first: everything is built before the first request.
    let prepare = Instant::now();
    let small_template = template(70, 70);
    let large_template = template(500, 512);
    let mut next_study = 0usize;
    let mut all_studies = Vec::new();
    let seed = args
        .seed
        .unwrap_or_else(|| uuid::Uuid::new_v4().as_u64_pair().0);
    let mut uids = Uids { seed, next: 0 };
    let mut make = |template: &InMemDicomObject, n: usize| -> anyhow::Result<Vec<Instance>> {
        let studies: Vec<(usize, Study)> = (0..n.div_ceil(INSTANCES_PER_STUDY))
            .map(|_| {
                next_study += 1;
                (next_study - 1, study(next_study - 1, &mut uids))
            })
            .collect();
        let mut set = instances(template, &studies, &mut uids)?;
        set.truncate(n);
        all_studies.extend(studies);
        Ok(set)
    };
    let small_sets: Vec<Vec<Instance>> = (0..4)
        .map(|_| make(&small_template, args.small))
        .collect::<Result<_, _>>()?;
    let large_sets: Vec<Vec<Instance>> = (0..4)
        .map(|_| make(&large_template, args.large))
        .collect::<Result<_, _>>()?;
    let avg_kb = |sets: &[Vec<Instance>]| {
        let (n, b) = sets
            .iter()
            .flatten()
            .fold((0, 0), |(n, b), i| (n + 1, b + i.bytes.len()));
        b as f64 / 1024.0 / n.max(1) as f64
    };
    let (small_kb, large_kb) = (avg_kb(&small_sets), avg_kb(&large_sets));
    let total_instances: usize = small_sets.iter().chain(&large_sets).map(Vec::len).sum();

    // Reads: samples of what the STOW rows store.
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let instance_path = |i: &Instance| {
        format!(
            "/studies/{}/series/{}/instances/{}",
            all_studies[i.study].1.uid, i.series, i.sop
        )
    };
    let small_all: Vec<&Instance> = small_sets.iter().flatten().collect();
    let large_all: Vec<&Instance> = large_sets.iter().flatten().collect();
    let sample_gets = |set: &[&Instance], rng: &mut Rng| -> Vec<Request> {
        (0..args.reads)
            .map(|_| Request {
                path: instance_path(set[rng.below(set.len())]),
                body: None,
            })
            .collect()
    };
    let wado_small = sample_gets(&small_all, &mut rng);
    let wado_large = sample_gets(&large_all, &mut rng);
    let small_studies: Vec<usize> = {
        let mut s: Vec<usize> = small_all.iter().map(|i| i.study).collect();
        s.dedup();
        s
    };
    let metadata: Vec<Request> = (0..args.reads)
        .map(|_| Request {
            path: format!(
                "/studies/{}/metadata",
                all_studies[small_studies[rng.below(small_studies.len())]]
                    .1
                    .uid
            ),
            body: None,
        })
        .collect();
    let n_studies = all_studies.len();
    let qido = |rng: &mut Rng, query: &dyn Fn(usize) -> String| -> Vec<Request> {
        (0..args.queries)
            .map(|_| Request {
                path: format!("/studies?{}&limit=100", query(rng.below(n_studies))),
                body: None,
            })
            .collect()
    };
    let by_patient = qido(&mut rng, &|g| format!("PatientID=PAT-{:05}", g / 2));
    let by_date = qido(&mut rng, &|g| {
        let g = g.min(n_studies.saturating_sub(10));
        format!("StudyDate={}-{}", date_of(g), date_of(g + 9))
    });
    let by_modality = qido(&mut rng, &|g| {
        format!("ModalitiesInStudy={}", MODALITIES[g % MODALITIES.len()])
    });

    let mut rows = stow_rows("small", small_sets, Bar::AtLeast(10.0));
    rows.extend(stow_rows("large", large_sets, Bar::AtLeast(3.0)));
    for c in [1, 8] {
        let reads = |label: &str, kind, accept, requests: &Vec<Request>, bar| Row {
            label: match label.split_once(" (") {
                Some((name, unit)) => format!("{name} c{c} ({unit}"),
                None => format!("{label} c{c}"),
            },
            kind,
            accept,
            concurrency: c,
            items_per_request: 1,
            requests: requests
                .iter()
                .map(|r| Request {
                    path: r.path.clone(),
                    body: None,
                })
                .collect(),
            bar,
        };
        rows.push(reads(
            "QIDO PatientID (queries)",
            Kind::Qido,
            DICOM_JSON,
            &by_patient,
            Bar::AtLeast(5.0),
        ));
        rows.push(reads(
            "QIDO StudyDate range (queries)",
            Kind::Qido,
            DICOM_JSON,
            &by_date,
            Bar::AtLeast(5.0),
        ));
        rows.push(reads(
            "QIDO ModalitiesInStudy (queries)",
            Kind::Qido,
            DICOM_JSON,
            &by_modality,
            Bar::AtLeast(50.0),
        ));
        rows.push(reads(
            "WADO instance small (instances)",
            Kind::Get,
            MULTIPART_DICOM,
            &wado_small,
            Bar::None,
        ));
        rows.push(reads(
            "WADO instance large (instances)",
            Kind::Get,
            MULTIPART_DICOM,
            &wado_large,
            Bar::None,
        ));
        rows.push(reads(
            "study metadata (studies)",
            Kind::Get,
            DICOM_JSON,
            &metadata,
            Bar::AtLeast(5.0),
        ));
    }
    // STOW first, then reads: c1 and c8 of one read next to each other.
    let stow_count = rows.iter().filter(|r| r.kind == Kind::Stow).count();
    let reads = rows.split_off(stow_count);
    let (c1, c8): (Vec<Row>, Vec<Row>) = reads.into_iter().partition(|r| r.concurrency == 1);
    for (a, b) in c1.into_iter().zip(c8) {
        rows.push(a);
        rows.push(b);
    }
    if args.reads_only {
        rows.retain(|r| r.kind != Kind::Stow);
    }
    if !args.rows.is_empty() {
        rows.retain(|r| args.rows.iter().any(|p| r.label.starts_with(p.as_str())));
    }
    eprintln!(
        "prepared {total_instances} instances ({small_kb:.1} KB small, {large_kb:.1} KB large) in {n_studies} studies, {} requests, in {:.1} s",
        rows.iter().map(|r| r.requests.len()).sum::<usize>(),
        prepare.elapsed().as_secs_f64()
    );

    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(16)
        // Orthanc closes connections idle for 1 s; never reuse one that may be closing.
        .pool_idle_timeout(Duration::from_millis(800))
        .timeout(Duration::from_secs(300))
        .default_headers(
            [(
                reqwest::header::ACCEPT_ENCODING,
                reqwest::header::HeaderValue::from_static("identity"),
            )]
            .into_iter()
            .collect(),
        )
        .build()?;

    // results[target][row]
    let mut results: Vec<Vec<Result<Measured, String>>> = Vec::new();
    for t in &targets {
        let mut mine = Vec::new();
        let counted = settle(t).await;
        eprintln!(
            "{}: counting the CPU of {} processes ({} of them PostgreSQL's)",
            t.name,
            counted.len(),
            counted.len().saturating_sub(t.pids.len())
        );
        if args.reads_only {
            // Freshly started servers: open their connections and warm their caches with a
            // few requests of each row first (a full run has the STOW rows before the reads).
            for row in &rows {
                let n = row.requests.len().min(20);
                let _ = futures::stream::iter(&row.requests[..n])
                    .map(|req| one(&client, &t.base, row, req))
                    .buffer_unordered(row.concurrency)
                    .collect::<Vec<_>>()
                    .await;
            }
        }
        for row in &rows {
            let r = run_row(&client, t, row).await;
            match &r {
                Ok(m) => eprintln!(
                    "{}: {}: {:.0}/s, {:.1} MB/s, p50/p99 {} ms, CPU server {:.1} s client {:.1} s",
                    t.name,
                    row.label,
                    m.items_per_s,
                    m.mb_per_s,
                    fmt_ms(m),
                    m.server_cpu,
                    m.client_cpu
                ),
                Err(e) => eprintln!("{}: {}: n/a ({e})", t.name, row.label),
            }
            mine.push(r);
        }
        results.push(mine);
    }

    // The table: targets side by side.
    let names: Vec<&str> = targets.iter().map(|t| t.name.as_str()).collect();
    println!(
        "\n## DICOMweb: {} (one run, same workload)\n",
        names.join(" vs ")
    );
    println!(
        "{total_instances} instances stored per target ({} small of {small_kb:.1} KB, {} large of {large_kb:.1} KB; \
         10 per study in 2 series, {n_studies} studies); {} queries per QIDO row, {} requests per WADO/metadata row. \
         p50/p99: request latency. CPU: seconds of the server processes / of this client during the row.\n",
        args.small * 4,
        args.large * 4,
        args.queries,
        args.reads,
    );
    let first = names[0];
    let others = &names[1..];
    let mut header = vec!["workload".to_owned()];
    header.extend(names.iter().map(|n| format!("{n} /s")));
    header.extend(others.iter().map(|o| format!("{first}/{o}")));
    if !others.is_empty() {
        header.push("bar".into());
    }
    header.extend(names.iter().map(|n| format!("{n} MB/s")));
    header.extend(names.iter().map(|n| format!("{n} p50/p99 ms")));
    header.extend(names.iter().map(|n| format!("{n} CPU s srv/cli")));
    println!("| {} |", header.join(" | "));
    println!("|{}", "---|".repeat(header.len()));
    let na = |e: &String| format!("n/a ({e})");
    let mut bar_lines: Vec<(String, f64, Option<f64>)> = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        let cells: Vec<&Result<Measured, String>> = results.iter().map(|r| &r[i]).collect();
        let mut line = vec![row.label.clone()];
        let each = |f: &dyn Fn(&Measured) -> String| -> Vec<String> {
            cells
                .iter()
                .map(|c| c.as_ref().map_or_else(na, f))
                .collect()
        };
        line.extend(each(&|m| format!("{:.0}", m.items_per_s)));
        let ratios: Vec<Option<f64>> = cells[1..]
            .iter()
            .map(|o| match (cells[0], o) {
                (Ok(a), Ok(b)) => Some(a.items_per_s / b.items_per_s),
                _ => None,
            })
            .collect();
        line.extend(
            ratios
                .iter()
                .map(|r| r.map_or("n/a".into(), |r| format!("x{r:.2}"))),
        );
        if !others.is_empty() {
            line.push(match row.bar {
                Bar::None => "-".into(),
                Bar::AtLeast(x) => {
                    bar_lines.push((row.label.clone(), x, ratios[0]));
                    match ratios[0] {
                        Some(r) if r >= x => format!("≥{x}x holds"),
                        Some(_) => format!("≥{x}x fails"),
                        None => format!("≥{x}x n/a"),
                    }
                }
            });
        }
        line.extend(each(&|m| format!("{:.1}", m.mb_per_s)));
        line.extend(each(&fmt_ms));
        line.extend(each(&|m| {
            format!("{:.2}/{:.2}", m.server_cpu, m.client_cpu)
        }));
        println!("| {} |", line.join(" | "));
    }

    if !others.is_empty() {
        println!("\nBars ({first}/{}):", others[0]);
        // Each bar and the row labels (prefixes) it applies to.
        let groups: [(&str, &[&str]); 4] = [
            ("STOW small ≥ 10x", &["STOW small"]),
            ("STOW large ≥ 3x", &["STOW large"]),
            (
                "QIDO (PatientID, StudyDate) and study metadata ≥ 5x",
                &["QIDO PatientID", "QIDO StudyDate", "study metadata"],
            ),
            ("QIDO ModalitiesInStudy ≥ 50x", &["QIDO ModalitiesInStudy"]),
        ];
        for (name, prefixes) in groups {
            let matches = |l: &str| prefixes.iter().any(|p| l.starts_with(p));
            let mine: Vec<&(String, f64, Option<f64>)> =
                bar_lines.iter().filter(|(l, _, _)| matches(l)).collect();
            if mine.is_empty() {
                continue; // its rows were left out (--rows, --reads-only)
            }
            let held = mine
                .iter()
                .filter(|(_, x, r)| r.is_some_and(|r| r >= *x))
                .count();
            let measured = mine.iter().filter(|(_, _, r)| r.is_some()).count();
            let verdict = if measured < mine.len() {
                "not measured in every row"
            } else if held == mine.len() {
                "holds"
            } else if held == 0 {
                "fails"
            } else {
                "holds in some rows"
            };
            let detail: Vec<String> = mine
                .iter()
                .map(|(l, _, r)| {
                    format!(
                        "{}: {}",
                        l.split(" (").next().unwrap_or(l),
                        r.map_or("n/a".into(), |r| format!("x{r:.2}"))
                    )
                })
                .collect();
            println!(
                "- {name}: {verdict} ({held} of {} rows; {})",
                mine.len(),
                detail.join(", ")
            );
        }
    }

    // QIDO answers should agree across targets.
    let mut qido_lines = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        if row.kind != Kind::Qido {
            continue;
        }
        let per: Vec<String> = results
            .iter()
            .zip(&names)
            .map(|(r, n)| match &r[i] {
                Ok(m) => format!("{n} {:.2}", m.results_per_request),
                Err(_) => format!("{n} n/a"),
            })
            .collect();
        qido_lines.push(format!("{}: {}", row.label, per.join(", ")));
    }
    if !qido_lines.is_empty() {
        println!("\nQIDO results per query (should agree):");
        for l in qido_lines {
            println!("- {l}");
        }
    }
    Ok(())
}
