//! `hds medtech`: a MedTech service (Azure's IoT connector) from the command line.
//!
//! - `hds medtech create|list|delete -w WS ...` manage IoT connectors through the management
//!   API (as `hds iot` does); `hds medtech destination create|delete` their FHIR destination.
//! - `hds medtech send '{"hr": 60, ...}'` posts device messages (one, or a JSON array) to an
//!   instance's ingestion endpoint, which answers once they are durably on the device topic.
//! - `hds medtech debug --device-mapping d.json --fhir-mapping f.json --message m.json` runs
//!   the mapping debugger locally: the normalized measurements, the Observations that would
//!   be written and every error, with nothing sent anywhere.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;

#[derive(clap::Args)]
pub struct MedtechArgs {
    #[command(subcommand)]
    command: MedtechCommand,
}

#[derive(Subcommand)]
enum MedtechCommand {
    #[command(flatten)]
    Manage(crate::manage::services::ServiceCommand),
    /// The FHIR destination of an IoT connector: create, delete.
    Destination(crate::manage::services::DestinationArgs),
    /// Send device messages to a MedTech service's ingestion endpoint.
    Send(SendArgs),
    /// Run the mapping debugger on a message, locally and without side effects.
    Debug(DebugArgs),
}

#[derive(clap::Args)]
struct SendArgs {
    /// The message: one JSON message or a JSON array of them; `-` (or nothing with --file
    /// absent) reads standard input.
    message: Option<String>,
    /// Read the message from this file instead.
    #[arg(long, conflicts_with = "message")]
    file: Option<PathBuf>,
    /// The MedTech service instance's URL.
    #[arg(long, default_value = "http://127.0.0.1:8083/default-medtech")]
    url: String,
    /// The partition key (e.g. the device id): messages with one key keep their order.
    #[arg(long)]
    partition_key: Option<String>,
    /// A message property, `name=value` (seen by templates as `Properties.name`); repeatable.
    #[arg(long = "property", value_parser = parse_property)]
    properties: Vec<(String, String)>,
    /// A bearer token (see `hds token`), when the service requires one.
    #[arg(long, env = "HDS_TOKEN")]
    token: Option<String>,
}

#[derive(clap::Args)]
struct DebugArgs {
    /// The device mapping (CollectionContent JSON).
    #[arg(long)]
    device_mapping: PathBuf,
    /// The FHIR destination mapping (CollectionFhir JSON).
    #[arg(long)]
    fhir_mapping: PathBuf,
    /// The device message; `-` reads standard input.
    #[arg(long)]
    message: PathBuf,
}

fn parse_property(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("'{s}' is not name=value")),
    }
}

pub fn run(args: MedtechArgs) -> ExitCode {
    let result = match args.command {
        MedtechCommand::Manage(command) => {
            return crate::manage::services::run_command(
                crate::manage::services::ServiceType::Iot,
                command,
            )
        }
        MedtechCommand::Destination(args) => return crate::manage::services::run_destination(args),
        MedtechCommand::Send(a) => send(a),
        MedtechCommand::Debug(a) => debug(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("hds medtech: {e}");
            ExitCode::FAILURE
        }
    }
}

fn read_input(path: &Path) -> Result<Vec<u8>, String> {
    if path == Path::new("-") {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .map_err(|e| format!("reading standard input: {e}"))?;
        return Ok(buf);
    }
    std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))
}

fn send(args: SendArgs) -> Result<ExitCode, String> {
    let body = match (&args.message, &args.file) {
        (Some(m), _) if m != "-" => m.clone().into_bytes(),
        (_, Some(f)) => read_input(f)?,
        _ => read_input(Path::new("-"))?,
    };
    serde_json::from_slice::<serde_json::Value>(&body)
        .map_err(|e| format!("the message is not JSON: {e}"))?;
    let url = format!("{}/ingest", args.url.trim_end_matches('/'));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    runtime.block_on(async move {
        let mut req = reqwest::Client::new()
            .post(&url)
            .header("Content-Type", "application/json")
            .body(body);
        if let Some(key) = &args.partition_key {
            req = req.header("x-partition-key", key);
        }
        for (name, value) in &args.properties {
            req = req.header(format!("x-property-{name}"), value);
        }
        if let Some(token) = &args.token {
            req = req.bearer_auth(token);
        }
        let res = req.send().await.map_err(|e| format!("POST {url}: {e}"))?;
        let status = res.status();
        let text = res.text().await.unwrap_or_default();
        if status.is_success() {
            let _ = writeln!(std::io::stdout(), "{text}");
            Ok(ExitCode::SUCCESS)
        } else {
            Err(format!("POST {url} answered {status}: {text}"))
        }
    })
}

fn debug(args: DebugArgs) -> Result<ExitCode, String> {
    let text = |p: &Path| {
        read_input(p).and_then(|b| {
            String::from_utf8(b).map_err(|_| format!("{} is not UTF-8 text", p.display()))
        })
    };
    let device = text(&args.device_mapping)?;
    let fhir = text(&args.fhir_mapping)?;
    let message = read_input(&args.message)?;
    let report = match medtech_svc::envelope::DeviceEvent::new(
        &message,
        serde_json::Map::new(),
        serde_json::Map::new(),
    ) {
        Ok(event) => medtech_svc::debug::debug(&device, &fhir, &event, chrono::Utc::now()),
        Err(e) => medtech_svc::debug::DebugReport {
            errors: vec![medtech_svc::debug::DebugError {
                stage: medtech_svc::debug::Stage::Normalization,
                path: None,
                line: None,
                column: None,
                message: e.to_string(),
            }],
            ..Default::default()
        },
    };
    let out = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
    // A closed pipe (`| head`) is the reader's choice, not a failure worth a panic.
    let _ = writeln!(std::io::stdout(), "{out}");
    Ok(if report.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
