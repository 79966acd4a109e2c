//! `hds up`: the four services in one process on embedded defaults.
//!
//! Each service keeps its own SQLite file under `--data-dir`; they share one embedded bus
//! (`bus.db`) and DICOM keeps blobs in `blobs/`. Services still meet only through the bus and
//! HTTP, exactly as when deployed apart; only the wiring differs. Data survives a restart,
//! and the bootstrap workspace is created once.

use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hds_core::auth::{AuthSettings, LocalKey, LOCAL_ISSUER};
use hds_core::blob::local::LocalBlobStore;
use hds_core::bus::embedded::{EmbeddedBus, EmbeddedBusSettings};
use hds_core::bus::SharedBus;
use hds_core::config::{LogFormat, TelemetrySettings};
use hds_core::db::{sqlite_url, Database, DatabaseSettings};
use hds_core::names::ServiceKind;
use hds_core::ops::{check_bind, listen, shutdown_on_signals, Running, StartError};
use operations_svc::operations::OperationStatus;

/// The audience local tokens carry and `hds up --auth` expects.
pub const LOCAL_AUDIENCE: &str = "hds";

#[derive(clap::Args)]
pub struct UpArgs {
    /// Where all data lives (SQLite files, blobs, the bus, the local signing key).
    #[arg(long, default_value = "./data")]
    data_dir: PathBuf,
    /// Address to listen on; anything but loopback requires --auth.
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    #[arg(long, default_value_t = operations_svc::DEFAULT_PORT)]
    operations_port: u16,
    #[arg(long, default_value_t = fhir_svc::DEFAULT_PORT)]
    fhir_port: u16,
    #[arg(long, default_value_t = dicom_svc::DEFAULT_PORT)]
    dicom_port: u16,
    #[arg(long, default_value_t = medtech_svc::DEFAULT_PORT)]
    medtech_port: u16,
    /// Require bearer tokens (minted with `hds token`, signed with {data-dir}/auth).
    #[arg(long)]
    auth: bool,
    /// The audience tokens must carry when --auth is on.
    #[arg(long, default_value = LOCAL_AUDIENCE)]
    audience: String,
    /// Log as JSON instead of text.
    #[arg(long)]
    json_logs: bool,
}

pub fn run(args: UpArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("hds up: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let telemetry = TelemetrySettings {
            log_format: if args.json_logs {
                LogFormat::Json
            } else {
                LogFormat::Text
            },
            ..TelemetrySettings::default()
        };
        let _guard = match hds_core::telemetry::init("hds", &telemetry) {
            Ok(g) => g,
            Err(e) => {
                eprintln!("hds up: {e}");
                return ExitCode::from(2);
            }
        };
        match up(args).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("hds up: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

async fn sqlite(data_dir: &Path, name: &str) -> Result<Database, StartError> {
    Ok(Database::connect(&DatabaseSettings::new(sqlite_url(&data_dir.join(name)))).await?)
}

async fn up(args: UpArgs) -> Result<(), StartError> {
    let data_dir = args.data_dir.clone();
    std::fs::create_dir_all(&data_dir).map_err(|e| {
        StartError::Other(format!(
            "cannot create --data-dir {}: {e}",
            data_dir.display()
        ))
    })?;
    let auth = if args.auth {
        let key = LocalKey::load_or_create(&data_dir.join("auth"))?;
        AuthSettings {
            enabled: true,
            issuer: Some(LOCAL_ISSUER.into()),
            audience: Some(args.audience.clone()),
            public_key_file: Some(key.public_key_file),
            ..AuthSettings::default()
        }
    } else {
        AuthSettings::default()
    };
    let addr = |port| SocketAddr::new(args.host, port);
    let binds = [
        addr(args.operations_port),
        addr(args.fhir_port),
        addr(args.dicom_port),
        addr(args.medtech_port),
    ];
    for bind in binds {
        check_bind(bind, &auth)?;
    }
    // Take every port before starting anything, so a busy port fails cleanly.
    let listeners: Vec<TcpListener> = binds.iter().map(|b| listen(*b)).collect::<Result<_, _>>()?;
    let [ops_l, fhir_l, dicom_l, medtech_l]: [TcpListener; 4] =
        listeners.try_into().expect("four listeners");
    if !args.auth {
        tracing::warn!("authentication is OFF: every caller may do everything (loopback only; use --auth to require tokens)");
    }

    let bus_url = sqlite_url(&data_dir.join("bus.db"));
    let bus: SharedBus = Arc::new(
        EmbeddedBus::open(
            sqlite(&data_dir, "bus.db").await?,
            EmbeddedBusSettings::new(bus_url),
        )
        .await?,
    );
    let shutdown = shutdown_on_signals();

    let mut fhir = fhir_svc::Settings::local_defaults(&data_dir);
    fhir.http.bind = binds[1];
    fhir.auth = auth.clone();
    let fhir_running = fhir_svc::start_with(
        fhir,
        fhir_svc::Deps {
            db: sqlite(&data_dir, "fhir.db").await?,
            bus: bus.clone(),
        },
        fhir_l,
        shutdown.clone(),
    )
    .await?;

    let mut dicom = dicom_svc::Settings::local_defaults(&data_dir);
    dicom.http.bind = binds[2];
    dicom.auth = auth.clone();
    let blobs = Arc::new(LocalBlobStore::open(&data_dir.join("blobs")).await?);
    let dicom_running = dicom_svc::start_with(
        dicom,
        dicom_svc::Deps {
            db: sqlite(&data_dir, "dicom.db").await?,
            bus: bus.clone(),
            blobs,
        },
        dicom_l,
        shutdown.clone(),
    )
    .await?;

    let mut medtech = medtech_svc::Settings::local_defaults(&data_dir);
    medtech.http.bind = binds[3];
    medtech.auth = auth.clone();
    // The MedTech pipeline writes to this process' fhir-svc (over HTTP, as when deployed).
    let fhir_host = if args.host.is_unspecified() {
        IpAddr::from([127, 0, 0, 1])
    } else {
        args.host
    };
    medtech.medtech.fhir_base_url = format!(
        "http://{}",
        SocketAddr::new(fhir_host, fhir_running.addr.port())
    );
    let medtech_running = medtech_svc::start_with(
        medtech,
        medtech_svc::Deps {
            db: sqlite(&data_dir, "medtech.db").await?,
            bus: bus.clone(),
        },
        medtech_l,
        shutdown.clone(),
    )
    .await?;

    let mut operations = operations_svc::Settings::local_defaults(&data_dir);
    operations.http.bind = binds[0];
    operations.auth = auth.clone();
    let bootstrap = operations.bootstrap.clone().unwrap_or_default();
    let ops_db = sqlite(&data_dir, "operations.db").await?;
    let ops_running = operations_svc::start_with(
        operations,
        operations_svc::Deps {
            db: ops_db.clone(),
            bus: bus.clone(),
        },
        ops_l,
        shutdown.clone(),
    )
    .await?;

    // Wait until the default workspace's services are provisioned, then say where they are.
    let planned = operations_svc::bootstrap::plan(&bootstrap);
    let deadline = Instant::now() + Duration::from_secs(60);
    for p in &planned {
        loop {
            let op = operations_svc::operations::get(&ops_db, &p.operation_id)
                .await
                .ok()
                .flatten();
            match op.map(|o| o.status) {
                Some(OperationStatus::Succeeded) | None => break,
                Some(s) if s.is_terminal() => {
                    return Err(StartError::Other(format!(
                        "provisioning {} ended {}",
                        p.instance,
                        s.as_str()
                    )))
                }
                _ if Instant::now() > deadline || shutdown.is_cancelled() => {
                    return Err(StartError::Other(format!(
                        "provisioning {} did not finish in 60 s",
                        p.instance
                    )))
                }
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }
    let base = |running: &Running| format!("http://{}", running.addr);
    let instance_of = |kind| {
        planned
            .iter()
            .find(|p| p.kind == kind)
            .map(|p| format!("/{}", p.instance))
            .unwrap_or_default()
    };
    println!(
        "hds is up; data in {}{}",
        data_dir.display(),
        if args.auth {
            "; tokens required (hds token --role ...)"
        } else {
            "; authentication off (loopback only)"
        }
    );
    println!("operations-svc {}", base(&ops_running));
    println!(
        "fhir-svc {}{}",
        base(&fhir_running),
        instance_of(ServiceKind::Fhir)
    );
    println!(
        "dicom-svc {}{}",
        base(&dicom_running),
        instance_of(ServiceKind::Dicom)
    );
    println!(
        "medtech-svc {}{}",
        base(&medtech_running),
        instance_of(ServiceKind::Medtech)
    );
    if let Some(p) = planned.first() {
        println!(
            "try: curl '{}/subscriptions/{}/providers/Microsoft.HealthcareApis/locations/{}/operationresults/{}?api-version={}'",
            base(&ops_running), bootstrap.subscription_id, bootstrap.location, p.operation_id, operations_svc::API_VERSION
        );
    }
    println!("stop with Ctrl-C");

    for running in [ops_running, fhir_running, dicom_running, medtech_running] {
        running.wait().await;
    }
    tracing::info!("hds stopped");
    Ok(())
}
