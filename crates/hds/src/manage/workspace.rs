//! `hds workspace create|list|delete`.

use clap::Subcommand;
use reqwest::Method;
use serde_json::json;

use super::client::{print_list, Client};
use super::Target;

#[derive(clap::Args)]
pub struct WorkspaceArgs {
    #[command(subcommand)]
    command: WorkspaceCommand,
}

#[derive(Subcommand)]
enum WorkspaceCommand {
    /// Create (or update) a workspace.
    Create {
        #[command(flatten)]
        target: Target,
        name: String,
        #[arg(long, short = 'l', default_value = "local")]
        location: String,
    },
    /// List the workspaces of the resource group.
    List {
        #[command(flatten)]
        target: Target,
    },
    /// Delete a workspace (it must have no services left).
    Delete {
        #[command(flatten)]
        target: Target,
        name: String,
    },
}

pub fn run(args: WorkspaceArgs) -> std::process::ExitCode {
    super::run("workspace", async move {
        match args.command {
            WorkspaceCommand::Create {
                target,
                name,
                location,
            } => {
                let client = Client::new(target);
                let url = client.group_url(&format!("workspaces/{name}"));
                let answer = client
                    .call(Method::PUT, &url, Some(&json!({ "location": location })))
                    .await?;
                client.follow(&answer, &format!("workspace {name}")).await?;
                println!("{}", answer.body["id"].as_str().unwrap_or(&name));
            }
            WorkspaceCommand::List { target } => {
                let client = Client::new(target);
                let answer = client
                    .call(Method::GET, &client.group_url("workspaces"), None)
                    .await?;
                print_list(&answer.body);
            }
            WorkspaceCommand::Delete { target, name } => {
                let client = Client::new(target);
                let url = client.group_url(&format!("workspaces/{name}"));
                let answer = client.call(Method::DELETE, &url, None).await?;
                if answer.status == reqwest::StatusCode::NO_CONTENT {
                    println!("workspace {name} does not exist");
                } else {
                    client.follow(&answer, &format!("workspace {name}")).await?;
                    println!("workspace {name} deleted");
                }
            }
        }
        Ok(())
    })
}
