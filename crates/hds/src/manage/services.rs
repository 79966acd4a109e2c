//! `hds fhir|dicom|iot create|list|delete`: the services of a workspace.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use reqwest::Method;
use serde_json::{json, Value};

use super::client::{print_list, Client};
use super::Target;

/// Which collection of a workspace a command acts on.
#[derive(Clone, Copy)]
pub enum ServiceType {
    Fhir,
    Dicom,
    Iot,
}

impl ServiceType {
    fn segment(self) -> &'static str {
        match self {
            ServiceType::Fhir => "fhirservices",
            ServiceType::Dicom => "dicomservices",
            ServiceType::Iot => "iotconnectors",
        }
    }
    fn label(self) -> &'static str {
        match self {
            ServiceType::Fhir => "FHIR service",
            ServiceType::Dicom => "DICOM service",
            ServiceType::Iot => "IoT connector",
        }
    }
}

#[derive(clap::Args)]
pub struct ServiceArgs {
    #[command(flatten)]
    target: Target,
    #[command(subcommand)]
    command: ServiceCommand,
}

#[derive(Subcommand)]
enum ServiceCommand {
    /// Create (or update) a service and wait until it serves.
    Create {
        #[arg(long, short = 'w')]
        workspace: String,
        name: String,
        #[arg(long, short = 'l', default_value = "local")]
        location: String,
        /// A JSON file with the resource's `properties` (for an IoT connector, e.g. its
        /// `deviceMapping`).
        #[arg(long)]
        properties: Option<PathBuf>,
    },
    /// List the services of this kind in a workspace.
    List {
        #[arg(long, short = 'w')]
        workspace: String,
    },
    /// Delete a service and all its data.
    Delete {
        #[arg(long, short = 'w')]
        workspace: String,
        name: String,
    },
}

pub fn run(kind: ServiceType, args: ServiceArgs) -> std::process::ExitCode {
    super::run(kind.segment(), async move {
        let client = Client::new(args.target);
        match args.command {
            ServiceCommand::Create {
                workspace,
                name,
                location,
                properties,
            } => {
                let mut body = json!({ "location": location });
                if let Some(path) = properties {
                    let text = std::fs::read_to_string(&path)
                        .with_context(|| format!("cannot read {}", path.display()))?;
                    let props: Value = serde_json::from_str(&text)
                        .with_context(|| format!("{} is not JSON", path.display()))?;
                    body["properties"] = props;
                }
                let url =
                    client.group_url(&format!("workspaces/{workspace}/{}/{name}", kind.segment()));
                let answer = client.call(Method::PUT, &url, Some(&body)).await?;
                client
                    .follow(&answer, &format!("{} {name}", kind.label()))
                    .await?;
                println!("{}", answer.body["id"].as_str().unwrap_or(&name));
            }
            ServiceCommand::List { workspace } => {
                let url = client.group_url(&format!("workspaces/{workspace}/{}", kind.segment()));
                print_list(&client.call(Method::GET, &url, None).await?.body);
            }
            ServiceCommand::Delete { workspace, name } => {
                let url =
                    client.group_url(&format!("workspaces/{workspace}/{}/{name}", kind.segment()));
                let answer = client.call(Method::DELETE, &url, None).await?;
                if answer.status == reqwest::StatusCode::NO_CONTENT {
                    println!("{} {name} does not exist", kind.label());
                } else {
                    client
                        .follow(&answer, &format!("{} {name}", kind.label()))
                        .await?;
                }
            }
        }
        Ok(())
    })
}
