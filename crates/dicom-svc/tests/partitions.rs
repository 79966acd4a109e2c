//! Azure's data partitions (`enableDataPartitions`) as a client sees them, on SQLite + the
//! embedded bus + a blob folder and on PostgreSQL + Kafka (tansu) + S3 (s3s-fs): the same UIDs
//! stored in two partitions independently, searches, retrievals and deletions that stay in
//! their partition, the partition list, the change feed across partitions, Azure's 400s, and
//! deprovisioning that removes every partition.

mod common;

use std::time::Duration;

use common::client::{Answer, Dicom};
use common::{new_uid, Env, Generated};
use hds_core::events::topics;
use hds_core::events::v1::{
    DicomInstanceAction, DicomInstanceEvent, OperationKind, OperationState,
};
use prost::Message;
use reqwest::{Client, StatusCode};
use serde_json::json;

const INSTANCE: &str = "ws1-parts";

impl Dicom {
    fn of(env: &Env, instance: &str) -> Self {
        Dicom {
            client: Client::new(),
            root: env.url(&format!("/{instance}/v2")),
        }
    }

    /// The SOP Instance UIDs a QIDO-RS instance search finds, sorted.
    async fn sops(&self, path: &str) -> Vec<String> {
        let a = self.get(path, "application/dicom+json").await;
        if a.status == StatusCode::NO_CONTENT {
            return Vec::new();
        }
        assert_eq!(a.status, 200, "{path}: {}", a.text());
        let mut out: Vec<String> = a
            .json()
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["00080018"]["Value"][0].as_str().unwrap().to_owned())
            .collect();
        out.sort();
        out
    }
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// The RetrieveURLs (0008,1190) of the stored instances of a STOW-RS answer.
fn retrieve_urls(a: &Answer) -> Vec<String> {
    a.json()["00081199"]["Value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["00081190"]["Value"][0].as_str().unwrap().to_owned())
        .collect()
}

/// The first `n` instance events on the bus.
async fn events(env: &Env, n: usize) -> Vec<DicomInstanceEvent> {
    let mut sub = env.subscribe(topics::DICOM_INSTANCES).await;
    let mut out = Vec::new();
    while out.len() < n {
        let d = tokio::time::timeout(Duration::from_secs(60), sub.next())
            .await
            .expect("an event within 60 s")
            .unwrap();
        out.push(DicomInstanceEvent::decode(d.payload.as_slice()).unwrap());
    }
    sub.close().await;
    out
}

/// Rows of `table` that belong to `instance`, in any of its partitions.
async fn rows_of(env: &Env, table: &str, instance: &str) -> i64 {
    use sqlx::Row;
    sqlx::query(&format!(
        "SELECT COUNT(*) AS n FROM {table} WHERE instance = $1 OR instance LIKE $2"
    ))
    .bind(instance)
    .bind(format!("{instance}/%"))
    .fetch_one(env.db.pool())
    .await
    .unwrap()
    .try_get("n")
    .unwrap()
}

const MISSING: &str = "PartitionName value is missing in the route segment.";
const DISABLED: &str = "Data partitions feature is disabled.";
const INVALID: &str = "The specified PartitionName is invalid.";
const UNKNOWN: &str = "Specified PartitionName does not exist.";

async fn same_uids_live_apart(env: Env) {
    env.provision_with(INSTANCE, json!({"enableDataPartitions": true}))
        .await;
    let dicom = Dicom::of(&env, INSTANCE);
    let study = new_uid();
    let a = Generated::new(&study);
    let b = Generated::new(&study);

    // The same instance in two partitions: both stored (one service would answer 409).
    let in_a = dicom.stow("/partitions/site-a/studies", &[&a.bytes]).await;
    assert_eq!(in_a.status, 200, "{}", in_a.text());
    assert!(
        retrieve_urls(&in_a)[0].ends_with(&format!("/{INSTANCE}/v2/partitions/site-a{}", a.path())),
        "{:?}",
        retrieve_urls(&in_a)
    );
    let in_b = dicom
        .stow("/partitions/site-b/studies", &[&a.bytes, &b.bytes])
        .await;
    assert_eq!(in_b.status, 200, "{}", in_b.text());
    assert_eq!(retrieve_urls(&in_b).len(), 2);
    // Within a partition UIDs are still unique.
    assert_eq!(
        dicom
            .stow("/partitions/site-b/studies", &[&a.bytes])
            .await
            .status,
        409
    );

    // Searches see their own partition only, at every level.
    let in_study = format!("/studies/{study}/instances");
    assert_eq!(
        dicom.sops(&format!("/partitions/site-a{in_study}")).await,
        vec![a.sop.clone()]
    );
    assert_eq!(
        dicom.sops(&format!("/partitions/site-b{in_study}")).await,
        sorted(vec![a.sop.clone(), b.sop.clone()])
    );
    assert_eq!(
        dicom
            .sops(&format!(
                "/partitions/site-a/instances?SeriesInstanceUID={}",
                b.series
            ))
            .await,
        Vec::<String>::new()
    );
    // Nothing was stored in the default partition.
    assert_eq!(
        dicom
            .get(
                &format!("/partitions/Microsoft.Default/studies?StudyInstanceUID={study}"),
                "application/dicom+json"
            )
            .await
            .status,
        204
    );

    // Retrieval too.
    let b_in_b = dicom
        .get(
            &format!("/partitions/site-b{}", b.path()),
            "application/dicom",
        )
        .await;
    assert_eq!(b_in_b.status, 200);
    assert_eq!(b_in_b.bytes, b.stored_bytes());
    assert_eq!(
        dicom
            .get(
                &format!("/partitions/site-a{}", b.path()),
                "application/dicom"
            )
            .await
            .status,
        404
    );
    let meta = dicom
        .get(
            &format!("/partitions/site-a/studies/{study}/metadata"),
            "application/dicom+json",
        )
        .await;
    assert_eq!(meta.status, 200);
    assert_eq!(meta.json().as_array().unwrap().len(), 1);

    // Deleting the study in one partition leaves the other's copy.
    assert_eq!(
        dicom
            .delete(&format!("/partitions/site-a/studies/{study}"))
            .await
            .status,
        204
    );
    assert_eq!(
        dicom.sops(&format!("/partitions/site-a{in_study}")).await,
        Vec::<String>::new()
    );
    assert_eq!(
        dicom.sops(&format!("/partitions/site-b{in_study}")).await,
        sorted(vec![a.sop.clone(), b.sop.clone()])
    );
    let a_in_b = dicom
        .get(
            &format!("/partitions/site-b{}", a.path()),
            "application/dicom",
        )
        .await;
    assert_eq!(a_in_b.status, 200);
    assert_eq!(a_in_b.bytes, a.stored_bytes());
    assert_eq!(env.blob_keys(&format!("{INSTANCE}/")).await.len(), 2);

    // The list: the default partition, then the created ones, with Azure's members.
    let list = dicom.get("/partitions", "application/json").await;
    assert_eq!(list.status, 200, "{}", list.text());
    let list = list.json();
    let list = list.as_array().unwrap();
    let names: Vec<&str> = list
        .iter()
        .map(|p| p["partitionName"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["Microsoft.Default", "site-a", "site-b"]);
    let keys: Vec<i64> = list
        .iter()
        .map(|p| p["partitionKey"].as_i64().unwrap())
        .collect();
    assert_eq!(keys, vec![1, 2, 3]);
    for p in list {
        let created = p["createdDate"].as_str().unwrap();
        assert!(
            chrono::DateTime::parse_from_rfc3339(created).is_ok(),
            "{created}"
        );
    }

    // The change feed spans the partitions; each entry names its own, and an entry's state
    // is that of the instance in its partition.
    let feed = dicom.get("/changefeed", "application/json").await;
    assert_eq!(feed.status, 200);
    let feed = feed.json();
    let seen: Vec<(&str, &str, &str, &str)> = feed
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["partitionName"].as_str().unwrap(),
                e["sopInstanceUid"].as_str().unwrap(),
                e["action"].as_str().unwrap(),
                e["state"].as_str().unwrap(),
            )
        })
        .collect();
    let (sa, sb) = (a.sop.as_str(), b.sop.as_str());
    let mut expected = vec![
        ("site-a", sa, "create", "deleted"),
        ("site-b", sa, "create", "current"),
        ("site-b", sb, "create", "current"),
        ("site-a", sa, "delete", "deleted"),
    ];
    // The two instances of one request are numbered in either order.
    if seen[1].1 == sb {
        expected.swap(1, 2);
    }
    assert_eq!(seen, expected);
    assert_eq!(
        feed[1]["metadata"]["00080018"]["Value"][0],
        json!(seen[1].1)
    );

    // Events carry the partition.
    let all = events(&env, 4).await;
    let mut partitions: Vec<(&str, i32)> = all
        .iter()
        .map(|e| (e.partition_name.as_str(), e.action))
        .collect();
    partitions.sort();
    let created = DicomInstanceAction::Created as i32;
    let deleted = DicomInstanceAction::Deleted as i32;
    let mut want = vec![
        ("site-a", created),
        ("site-a", deleted),
        ("site-b", created),
        ("site-b", created),
    ];
    want.sort();
    assert_eq!(partitions, want);
    env.stop().await;
}

async fn requests_are_checked_as_azure_checks_them(env: Env) {
    env.provision_with(INSTANCE, json!({"enableDataPartitions": true}))
        .await;
    let dicom = Dicom::of(&env, INSTANCE);
    let g = Generated::new(&new_uid());

    // With partitions on, DICOMweb paths need one; the change feed does not.
    for answer in [
        dicom.get("/studies", "application/dicom+json").await,
        dicom.stow("/studies", &[&g.bytes]).await,
        dicom.get(&g.path(), "application/dicom").await,
        dicom.delete(&format!("/studies/{}", g.study)).await,
    ] {
        assert_eq!(answer.status, 400, "{}", answer.text());
        assert_eq!(answer.text(), MISSING);
    }
    assert_eq!(
        dicom.get("/changefeed", "application/json").await.status,
        200
    );

    // Names as Azure validates them, stores included.
    for bad in ["bad%20name", "bad!name", "caf%C3%A9", &"x".repeat(65)] {
        let path = format!("/partitions/{bad}/studies");
        let search = dicom.get(&path, "application/dicom+json").await;
        assert_eq!(search.status, 400, "{bad}: {}", search.text());
        assert_eq!(search.text(), INVALID);
        let store = dicom.stow(&path, &[&g.bytes]).await;
        assert_eq!(store.status, 400, "{bad}: {}", store.text());
        assert_eq!(store.text(), INVALID);
    }
    let longest = "x".repeat(64);
    assert_eq!(
        dicom
            .stow(&format!("/partitions/{longest}/studies"), &[&g.bytes])
            .await
            .status,
        200
    );

    // Only a store creates a partition; reading or deleting in an unknown one is 400.
    for answer in [
        dicom
            .get("/partitions/nowhere/studies", "application/dicom+json")
            .await,
        dicom
            .get(
                &format!("/partitions/nowhere{}", g.path()),
                "application/dicom",
            )
            .await,
        dicom
            .delete(&format!("/partitions/nowhere/studies/{}", g.study))
            .await,
    ] {
        assert_eq!(answer.status, 400, "{}", answer.text());
        assert_eq!(answer.text(), UNKNOWN);
    }
    let list = dicom.get("/partitions", "application/json").await.json();
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["partitionName"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["Microsoft.Default", longest.as_str()]);

    // Turning the feature off while partitions hold data is refused, as on Azure.
    let refused = env
        .command(OperationKind::ProvisionInstance, INSTANCE, json!({}))
        .await;
    assert_eq!(refused.state, OperationState::Failed as i32, "{refused:?}");
    assert_eq!(refused.error_code, "DataPartitionsFeatureCannotBeDisabled");
    assert_eq!(
        dicom
            .get(
                &format!("/partitions/{longest}{}", g.path()),
                "application/dicom"
            )
            .await
            .status,
        200
    );
    env.stop().await;
}

async fn partitions_off_and_then_on(env: Env) {
    env.provision(INSTANCE).await;
    let dicom = Dicom::of(&env, INSTANCE);
    let g = Generated::new(&new_uid());

    // Off: partition paths and the list are Azure's 400, and create nothing.
    for answer in [
        dicom.get("/partitions", "application/json").await,
        dicom.stow("/partitions/site-a/studies", &[&g.bytes]).await,
        dicom
            .get(
                "/partitions/Microsoft.Default/studies",
                "application/dicom+json",
            )
            .await,
        dicom
            .delete(&format!("/partitions/site-a/studies/{}", g.study))
            .await,
    ] {
        assert_eq!(answer.status, 400, "{}", answer.text());
        assert_eq!(answer.text(), DISABLED);
    }
    assert_eq!(rows_of(&env, "dicom_partitions", INSTANCE).await, 0);
    assert_eq!(rows_of(&env, "dicom_instances", INSTANCE).await, 0);

    // The base paths work, and the feed names the default partition.
    assert_eq!(dicom.stow("/studies", &[&g.bytes]).await.status, 200);
    let feed = dicom.get("/changefeed", "application/json").await.json();
    assert_eq!(feed[0]["partitionName"], json!("Microsoft.Default"));
    assert_eq!(feed[0]["state"], json!("current"));

    // On: what was stored before is in Microsoft.Default.
    env.provision_with(INSTANCE, json!({"enableDataPartitions": true}))
        .await;
    assert_eq!(
        dicom
            .sops(&format!(
                "/partitions/Microsoft.Default/studies/{}/instances",
                g.study
            ))
            .await,
        vec![g.sop.clone()]
    );
    assert_eq!(
        dicom
            .get(
                &format!("/partitions/Microsoft.Default{}", g.path()),
                "application/dicom"
            )
            .await
            .bytes,
        g.stored_bytes()
    );
    env.stop().await;
}

async fn deprovisioning_removes_every_partition(env: Env) {
    const OTHER: &str = "ws1-kept";
    let on = json!({"enableDataPartitions": true});
    env.provision_with(INSTANCE, on.clone()).await;
    env.provision_with(OTHER, on).await;
    let dicom = Dicom::of(&env, INSTANCE);
    let other = Dicom::of(&env, OTHER);
    let g = Generated::new(&new_uid());
    for partition in ["Microsoft.Default", "site-a", "site-b"] {
        let path = format!("/partitions/{partition}/studies");
        assert_eq!(dicom.stow(&path, &[&g.bytes]).await.status, 200);
    }
    assert_eq!(
        other
            .stow("/partitions/site-a/studies", &[&g.bytes])
            .await
            .status,
        200
    );
    let tables = [
        "dicom_instances",
        "dicom_series",
        "dicom_studies",
        "dicom_changefeed",
    ];
    for table in tables {
        assert_eq!(rows_of(&env, table, INSTANCE).await, 3, "{table}");
    }
    assert_eq!(rows_of(&env, "dicom_partitions", INSTANCE).await, 2);
    assert_eq!(env.blob_keys(&format!("{INSTANCE}/")).await.len(), 3);

    env.deprovision(INSTANCE).await;
    for table in tables
        .iter()
        .chain(&["dicom_partitions", "dicom_changefeed_counters"])
    {
        assert_eq!(rows_of(&env, table, INSTANCE).await, 0, "{table}");
    }
    assert!(env.blob_keys(&format!("{INSTANCE}/")).await.is_empty());
    assert_eq!(
        dicom
            .get("/partitions/site-a/studies", "application/dicom+json")
            .await
            .status,
        404
    );
    // The other instance keeps its partition and data.
    assert_eq!(
        other.sops("/partitions/site-a/instances").await,
        vec![g.sop.clone()]
    );
    assert_eq!(env.blob_keys(&format!("{OTHER}/")).await.len(), 1);
    env.stop().await;
}

macro_rules! suite {
    ($backend:ident) => {
        mod $backend {
            use super::*;
            #[tokio::test]
            async fn same_uids_live_apart() {
                super::same_uids_live_apart(Env::$backend().await).await
            }
            #[tokio::test]
            async fn requests_are_checked_as_azure_checks_them() {
                super::requests_are_checked_as_azure_checks_them(Env::$backend().await).await
            }
            #[tokio::test]
            async fn partitions_off_and_then_on() {
                super::partitions_off_and_then_on(Env::$backend().await).await
            }
            #[tokio::test]
            async fn deprovisioning_removes_every_partition() {
                super::deprovisioning_removes_every_partition(Env::$backend().await).await
            }
        }
    };
}

suite!(embedded);
suite!(kafka);
