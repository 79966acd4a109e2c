//! Resource storage: every version kept, a pointer to the current one, events in the same
//! transaction (outbox). One implementation for PostgreSQL and SQLite through the `Any` pool.
//!
//! Writes start with the pointer update (`fhir_current`), which both serialises concurrent
//! writers of one resource (a row lock on PostgreSQL, the write lock on SQLite) and decides
//! the version: `If-Match` is a `WHERE version = n` on that update, so of concurrent writers
//! with the same expectation exactly one succeeds.

use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use hds_core::db::{self, Backend, Cell, Database, Migrations, Rows, SqlType};
use hds_core::events::v1::{FhirResourceAction, FhirResourceEvent};
use hds_core::events::{new_event_id, topics};
use hds_core::names::InstanceName;
use hds_core::outbox;
use serde_json::Value;
use sqlx::{Any, Row, Transaction};
use tokio::task::JoinHandle;

use crate::domain::{instant, ResourceId, ResourceType};
use crate::error::FhirError;
use crate::group_commit::{Done, GroupCommit, Work};
use crate::search::custom::{self, Catalog, CustomParams, InstanceParams};
use crate::search::index::IndexRows;
use crate::search::keys;

pub fn migrations() -> Migrations {
    Migrations {
        postgres: sqlx::migrate!("./migrations/postgres"),
        sqlite: sqlx::migrate!("./migrations/sqlite"),
    }
}

/// The HTTP method that made a version (history's `entry.request.method`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Post,
    Put,
    Patch,
    Delete,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
        }
    }
    fn parse(s: &str) -> Self {
        match s {
            "POST" => Method::Post,
            "PATCH" => Method::Patch,
            "DELETE" => Method::Delete,
            _ => Method::Put,
        }
    }
}

/// One stored version.
#[derive(Debug, Clone, PartialEq)]
pub struct Version {
    pub resource_type: String,
    pub id: String,
    pub version: i64,
    pub last_updated: DateTime<Utc>,
    pub method: Method,
    /// The resource as stored (with `meta`), or `None` for a deletion.
    pub body: Option<Value>,
}

impl Version {
    pub fn is_deletion(&self) -> bool {
        self.body.is_none()
    }
}

/// What a write did.
#[derive(Debug, Clone, PartialEq)]
pub struct Written {
    pub version: Version,
    /// The resource did not exist (or was deleted) before.
    pub created: bool,
}

/// One page of a history, newest first.
#[derive(Debug, Clone)]
pub struct HistoryPage {
    pub versions: Vec<Version>,
    /// The cursor of the next (older) page, if there is one.
    pub next: Option<i64>,
}

/// A write transaction: the database transaction and the rows its writes have not sent yet.
///
/// Writes queue the rows they add (versions, pointers of new resources, index entries,
/// events); [`WriteTx::conn`] sends them before any statement that could read them, so the
/// transaction always sees its own writes, while a bundle's creations cost a few multi-row
/// statements instead of several round trips each.
pub struct WriteTx {
    /// `None` only while queued rows are on their way in a background task (`inflight`).
    tx: Option<Transaction<'static, Any>>,
    queued: Queued,
    /// Rows sent ahead while the writer goes on: the task gives the transaction back.
    inflight: Option<SendingAhead>,
    /// The instances' custom search parameters, which writes index too.
    custom: Arc<CustomParams>,
    /// Held while this transaction changes instances' SearchParameters, dropped after it.
    changing_definitions: Vec<custom::Change>,
}

/// A task inserting rows in the transaction; it ends with the transaction and the outcome.
type SendingAhead = JoinHandle<(Transaction<'static, Any>, Result<(), FhirError>)>;

/// Once this many versions wait and the database is not busy with the ones before, a
/// transaction's creations start on their way to it while the writer prepares the next ones
/// (the database works on one core, the service on another, instead of taking turns). Small,
/// so that the database starts early in a bundle and has little left at its end; the rows
/// that queue while a send is on its way go together in the next, so sends grow as large as
/// the database is slow.
const SEND_AHEAD: usize = 16;

/// The rows a transaction's writes have queued.
struct Queued {
    current: Rows,
    versions: Rows,
    index: IndexRows,
    events: outbox::Batch,
    /// The resource types the queued rows belong to.
    types: std::collections::HashSet<String>,
}

impl Default for Queued {
    fn default() -> Self {
        use SqlType::{BigInt, Text};
        Self {
            current: Rows::new(
                "fhir_current",
                &[
                    ("instance", Text),
                    ("resource_type", Text),
                    ("id", Text),
                    ("version", BigInt),
                    ("deleted", BigInt),
                    ("last_updated_ms", BigInt),
                    ("rkey", BigInt),
                ],
            ),
            versions: Rows::new(
                "fhir_versions",
                &[
                    ("instance", Text),
                    ("resource_type", Text),
                    ("id", Text),
                    ("version", BigInt),
                    ("last_updated_ms", BigInt),
                    ("method", Text),
                    ("body", Text),
                ],
            ),
            index: IndexRows::default(),
            events: outbox::Batch::default(),
            types: Default::default(),
        }
    }
}

impl Queued {
    /// Inserts every queued row (on PostgreSQL in one statement) and empties the queue.
    async fn insert(&mut self, tx: &mut Transaction<'static, Any>) -> Result<(), FhirError> {
        let [a, b, c, d, e, f, g, h] = self.index.tables();
        db::insert_all(
            tx,
            &mut [
                &mut self.current,
                &mut self.versions,
                a,
                b,
                c,
                d,
                e,
                f,
                g,
                h,
                self.events.rows(),
            ],
        )
        .await
        .map_err(|e| match e {
            // A resource created here from the outside meanwhile (a PUT of a new id
            // raced another writer): the client may retry, as with any lost race.
            sqlx::Error::Database(d) if d.is_unique_violation() => FhirError::Conflict(
                "a resource this request creates was created by another request at the same \
                 time; retry the request"
                    .into(),
            ),
            other => other.into(),
        })?;
        self.types.clear();
        Ok(())
    }

    fn clear(&mut self) {
        self.current.clear();
        self.versions.clear();
        self.index.clear();
        self.events.clear();
        self.types.clear();
    }
}

impl WriteTx {
    pub(crate) async fn begin(db: &Database, custom: Arc<CustomParams>) -> Result<Self, FhirError> {
        Ok(Self::new(db.begin().await?, custom))
    }

    fn new(tx: Transaction<'static, Any>, custom: Arc<CustomParams>) -> Self {
        Self {
            tx: Some(tx),
            queued: Queued::default(),
            inflight: None,
            custom,
            changing_definitions: Vec::new(),
        }
    }

    /// The custom search parameters of `instance` (read in this transaction when this replica
    /// has no fresh copy).
    pub async fn custom_params(
        &mut self,
        instance: &InstanceName,
    ) -> Result<Arc<InstanceParams>, FhirError> {
        let inst = instance.to_string();
        if let Some(p) = self.custom.cached(&inst) {
            return Ok(p);
        }
        let custom = self.custom.clone();
        Ok(custom.load(&mut **self.conn().await?, &inst).await?)
    }

    /// Records what a SearchParameter resource now defines (`None`: nothing).
    async fn record_definition(
        &mut self,
        instance: &str,
        id: &ResourceId,
        definition: Option<&custom::Definition>,
    ) -> Result<(), FhirError> {
        self.changing_definitions
            .push(self.custom.changing(instance));
        custom::record(self.conn().await?, instance, id, definition).await?;
        Ok(())
    }

    /// The transaction, with every queued row sent: for reads and in-place changes.
    pub async fn conn(&mut self) -> Result<&mut Transaction<'static, Any>, FhirError> {
        self.settle().await?;
        let tx = self
            .tx
            .as_mut()
            .ok_or_else(|| FhirError::Internal("the transaction was lost".into()))?;
        self.queued.insert(tx).await?;
        Ok(tx)
    }

    /// The transaction for a search over `types`: queued rows of other types stay queued, so
    /// a bundle's conditional references to practitioners or organisations do not hold up
    /// its patients' and observations' creations. (Rows sent ahead are waited for: the
    /// connection is theirs until then.)
    pub async fn conn_for(
        &mut self,
        types: &std::collections::HashSet<String>,
    ) -> Result<&mut Transaction<'static, Any>, FhirError> {
        if self.queued.types.is_disjoint(types) {
            self.settle().await?;
            return self
                .tx
                .as_mut()
                .ok_or_else(|| FhirError::Internal("the transaction was lost".into()));
        }
        self.conn().await
    }

    /// Waits for rows sent ahead, taking the transaction back.
    async fn settle(&mut self) -> Result<(), FhirError> {
        if let Some(task) = self.inflight.take() {
            let (tx, sent) = task
                .await
                .map_err(|e| FhirError::Internal(format!("sending rows ahead: {e}")))?;
            self.tx = Some(tx);
            sent?;
        }
        Ok(())
    }

    /// After a creation was queued: once enough rows wait, sends them ahead in a task and
    /// lets it run (a yield), so the database inserts them while the writer goes on.
    async fn send_ahead(&mut self) -> Result<(), FhirError> {
        if let Some(task) = &self.inflight {
            if !task.is_finished() {
                tokio::task::yield_now().await;
                return Ok(());
            }
            self.settle().await?;
        }
        if self.queued.versions.len() < SEND_AHEAD {
            return Ok(());
        }
        let Some(mut tx) = self.tx.take() else {
            return Err(FhirError::Internal("the transaction was lost".into()));
        };
        let mut rows = std::mem::take(&mut self.queued);
        self.inflight = Some(tokio::spawn(async move {
            let sent = rows.insert(&mut tx).await;
            (tx, sent)
        }));
        tokio::task::yield_now().await;
        Ok(())
    }

    pub(crate) async fn commit(mut self) -> Result<(), FhirError> {
        self.conn().await?;
        match self.tx.take() {
            Some(tx) => {
                tx.commit().await?;
                // Once committed, this replica reads the definitions again.
                self.changing_definitions.clear();
                Ok(())
            }
            None => Err(FhirError::Internal("the transaction was lost".into())),
        }
    }

    /// Runs `work` so that, if it fails, everything it did is undone and the transaction
    /// goes on: its statements under a savepoint, its queued rows taken back.
    pub(crate) async fn isolated<T>(
        &mut self,
        work: impl AsyncFnOnce(&mut WriteTx) -> Result<T, FhirError>,
    ) -> Result<T, FhirError> {
        // Rows queued by earlier work must not be sent under this savepoint.
        sqlx::query("SAVEPOINT hds_write")
            .execute(&mut **self.conn().await?)
            .await?;
        let result = work(self).await;
        if result.is_err() {
            // Its rows may be queued, or on their way: both are undone.
            let _ = self.settle().await;
            self.queued.clear();
            if let Some(tx) = self.tx.as_mut() {
                sqlx::query("ROLLBACK TO SAVEPOINT hds_write")
                    .execute(&mut **tx)
                    .await?;
            }
        }
        sqlx::query("RELEASE SAVEPOINT hds_write")
            .execute(&mut **self.conn().await?)
            .await?;
        result
    }
}

/// Which history to list.
#[derive(Debug, Clone)]
pub enum HistoryScope {
    System,
    Type(ResourceType),
    Instance(ResourceType, ResourceId),
}

#[derive(Clone)]
pub struct Store {
    db: Database,
    relay: Option<hds_core::outbox::RelayWaker>,
    custom: Arc<CustomParams>,
    /// Single-resource writes go through group commit (on SQLite; see `group_commit`).
    group: Option<GroupCommit>,
}

fn time(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

fn version_from_row(row: &sqlx::any::AnyRow) -> Result<Version, FhirError> {
    stored_from_row(row)?.parse()
}

fn stored_from_row(row: &sqlx::any::AnyRow) -> Result<Stored, FhirError> {
    let method: String = row.try_get("method")?;
    Ok(Stored {
        version: Version {
            resource_type: row.try_get("resource_type")?,
            id: row.try_get("id")?,
            version: row.try_get("version")?,
            last_updated: time(row.try_get("last_updated_ms")?),
            method: Method::parse(&method),
            body: None,
        },
        text: row.try_get("body")?,
    })
}

/// A version as stored: its body is the JSON text (None for a deletion), unparsed, for
/// answers that send it as it is (read, vread).
#[derive(Debug, Clone)]
pub struct Stored {
    /// The version, without its body.
    pub version: Version,
    pub text: Option<String>,
}

impl Stored {
    pub fn is_deletion(&self) -> bool {
        self.text.is_none()
    }

    /// The version with its body parsed.
    pub fn parse(self) -> Result<Version, FhirError> {
        let body = self
            .text
            .map(|b| serde_json::from_str(&b))
            .transpose()
            .map_err(|e| FhirError::Internal(format!("stored resource is not JSON: {e}")))?;
        Ok(Version {
            body,
            ..self.version
        })
    }
}

const VERSION_COLUMNS: &str = "seq, resource_type, id, version, last_updated_ms, method, body";

impl Store {
    pub fn new(db: Database, relay: Option<hds_core::outbox::RelayWaker>) -> Self {
        Self {
            db,
            relay,
            custom: Arc::default(),
            group: None,
        }
    }

    /// A store whose single-resource writes share commits when the database needs it to
    /// (SQLite); its counters go to `registry`. `custom`: this replica's copy of the
    /// instances' custom search parameters (the reindexer shares it).
    pub fn with_group_commit(
        db: Database,
        relay: Option<hds_core::outbox::RelayWaker>,
        registry: &prometheus::Registry,
        custom: Arc<CustomParams>,
    ) -> Self {
        let group = (db.backend() == Backend::Sqlite)
            .then(|| GroupCommit::start(db.clone(), relay.clone(), registry, custom.clone()));
        Self {
            db,
            relay,
            custom,
            group,
        }
    }

    /// How many independent write transactions are worth running at once: several on
    /// PostgreSQL, whose commits overlap; one on SQLite, which has a single writer anyway.
    pub fn concurrent_writers(&self) -> usize {
        match self.db.backend() {
            Backend::Postgres => 8,
            Backend::Sqlite => 1,
        }
    }

    /// The search parameters requests of `instance` may name.
    pub async fn catalog(&self, instance: &InstanceName) -> Result<Catalog, FhirError> {
        let inst = instance.to_string();
        let params = match self.custom.cached(&inst) {
            Some(p) => p,
            None => self.custom.load(self.db.pool(), &inst).await?,
        };
        Ok(Catalog::new(params))
    }

    /// The current version (possibly a deletion), if the resource ever existed.
    pub async fn read(
        &self,
        instance: &InstanceName,
        rt: &ResourceType,
        id: &ResourceId,
    ) -> Result<Option<Version>, FhirError> {
        read_in(self.db.pool(), instance, rt, id).await
    }

    /// The current version, its body as stored.
    pub async fn read_stored(
        &self,
        instance: &InstanceName,
        rt: &ResourceType,
        id: &ResourceId,
    ) -> Result<Option<Stored>, FhirError> {
        read_stored_in(self.db.pool(), instance, rt, id).await
    }

    /// Version `version`, its body as stored.
    pub async fn vread_stored(
        &self,
        instance: &InstanceName,
        rt: &ResourceType,
        id: &ResourceId,
        version: i64,
    ) -> Result<Option<Stored>, FhirError> {
        vread_stored_in(self.db.pool(), instance, rt, id, version).await
    }

    /// The current versions of `ids` that exist and are not deleted, in the order of `ids`.
    pub async fn read_many(
        &self,
        instance: &InstanceName,
        rt: &ResourceType,
        ids: &[String],
    ) -> Result<Vec<Version>, FhirError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        // By key on the unique `rkey` index alone: with `instance = .. AND resource_type = ..`
        // beside it, PostgreSQL without statistics took that prefix of the primary key for
        // one row, merge-joined every current and every stored version of the type, and each
        // search's page cost time in proportion to the type's size. A key names its instance
        // and type (search/keys.rs); the type and id of each row are checked all the same.
        let inst = instance.to_string();
        let marks: Vec<String> = (1..=ids.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT v.seq, v.resource_type, v.id, v.version, v.last_updated_ms, v.method, v.body \
             FROM fhir_current c JOIN fhir_versions v ON v.instance = c.instance \
             AND v.resource_type = c.resource_type AND v.id = c.id AND v.version = c.version \
             WHERE c.deleted = 0 AND c.rkey IN ({})",
            marks.join(", ")
        );
        let mut q = sqlx::query(&sql);
        for id in ids {
            q = q.bind(crate::search::keys::resource(&inst, rt.as_str(), id));
        }
        let mut found: std::collections::HashMap<String, Version> = q
            .fetch_all(self.db.pool())
            .await?
            .iter()
            .map(version_from_row)
            .filter(|v| !matches!(v, Ok(v) if v.resource_type != rt.as_str()))
            .map(|v| v.map(|v| (v.id.clone(), v)))
            .collect::<Result<_, _>>()?;
        Ok(ids.iter().filter_map(|id| found.remove(id)).collect())
    }

    /// One page of the current resources matching an unsorted search, after `after`: each
    /// id with the cursor that starts the next page after it.
    pub async fn search_page(
        &self,
        instance: &InstanceName,
        rt: &ResourceType,
        conditions: &[crate::search::query::Condition],
        after: Option<&crate::search::cursor::Cursor>,
        limit: i64,
    ) -> Result<Vec<(String, crate::search::cursor::Cursor)>, FhirError> {
        crate::search::query::find_page(self.db.pool(), instance, rt, conditions, after, limit)
            .await
    }

    /// `_include`: what the reference parameter of these resources points at.
    pub async fn references_of(
        &self,
        instance: &InstanceName,
        rt: &ResourceType,
        param: Option<&str>,
        ids: &[String],
        target: Option<&str>,
    ) -> Result<Vec<(String, String)>, FhirError> {
        crate::search::query::references_of(self.db.pool(), instance, rt, param, ids, target).await
    }

    /// `_revinclude`: the resources of `rt` whose reference parameter points at these.
    pub async fn referrers_of(
        &self,
        instance: &InstanceName,
        rt: &ResourceType,
        param: Option<&str>,
        target_type: &str,
        targets: &[String],
    ) -> Result<Vec<String>, FhirError> {
        crate::search::query::referrers_of(
            self.db.pool(),
            instance,
            rt,
            param,
            target_type,
            targets,
        )
        .await
    }

    /// One page of the current resources matching a search, in `_sort` order after the row
    /// `after` (sort values and id), each with its sort values.
    pub async fn search_sorted(
        &self,
        instance: &InstanceName,
        rt: &ResourceType,
        conditions: &[crate::search::query::Condition],
        keys: &[crate::search::query::SortKey],
        after: Option<(&[crate::search::cursor::SortValue], &str)>,
        limit: i64,
    ) -> Result<Vec<(String, Vec<crate::search::cursor::SortValue>)>, FhirError> {
        crate::search::query::find_sorted(
            self.db.pool(),
            instance,
            rt,
            conditions,
            keys,
            after,
            limit,
        )
        .await
    }

    /// How many current resources match a search.
    pub async fn search_count(
        &self,
        instance: &InstanceName,
        rt: &ResourceType,
        conditions: &[crate::search::query::Condition],
    ) -> Result<i64, FhirError> {
        crate::search::query::count(self.db.pool(), instance, rt, conditions).await
    }

    /// Ids of current resources matching a search's conditions (at most `limit`).
    pub async fn find(
        &self,
        instance: &InstanceName,
        rt: &ResourceType,
        conditions: &[crate::search::query::Condition],
        limit: i64,
    ) -> Result<Vec<String>, FhirError> {
        crate::search::query::find(self.db.pool(), instance, rt, conditions, limit).await
    }

    /// A transaction for several operations (a transaction bundle); finish it with
    /// [`Store::commit`].
    pub async fn begin(&self) -> Result<WriteTx, FhirError> {
        Ok(WriteTx::new(self.db.begin().await?, self.custom.clone()))
    }

    pub async fn commit(&self, tx: WriteTx) -> Result<(), FhirError> {
        tx.commit().await?;
        self.wake();
        Ok(())
    }

    /// Writes a new version of `resource` (create, update or patch). `expected` is the
    /// `If-Match` version: the write happens only if it is the current one.
    #[allow(clippy::too_many_arguments)]
    pub async fn write(
        &self,
        instance: &InstanceName,
        rt: &ResourceType,
        id: &ResourceId,
        resource: Value,
        method: Method,
        expected: Option<i64>,
        history: History,
    ) -> Result<Written, FhirError> {
        if let Some(group) = &self.group {
            let work = Work::Write {
                instance: instance.clone(),
                rt: rt.clone(),
                id: id.clone(),
                resource,
                method,
                expected,
                history,
            };
            return match group.submit(work).await? {
                Done::Written(w) => Ok(w),
                Done::Deleted(_) => Err(FhirError::Internal("a write answered as a delete".into())),
            };
        }
        let mut tx = self.begin().await?;
        let written = write_in(
            &mut tx, instance, rt, id, resource, method, expected, history,
        )
        .await?;
        self.commit(tx).await?;
        Ok(written)
    }

    /// Deletes the resource: a soft delete keeps history and answers 410 on read; a hard
    /// delete removes every version. Returns the deletion version of a soft delete.
    pub async fn delete(
        &self,
        instance: &InstanceName,
        rt: &ResourceType,
        id: &ResourceId,
        hard: bool,
        history: History,
    ) -> Result<Option<Version>, FhirError> {
        if let Some(group) = &self.group {
            let work = Work::Delete {
                instance: instance.clone(),
                rt: rt.clone(),
                id: id.clone(),
                hard,
                history,
            };
            return match group.submit(work).await? {
                Done::Deleted(v) => Ok(v),
                Done::Written(_) => Err(FhirError::Internal("a delete answered as a write".into())),
            };
        }
        let mut tx = self.begin().await?;
        let deleted = delete_in(&mut tx, instance, rt, id, hard, history).await?;
        self.commit(tx).await?;
        Ok(deleted)
    }

    /// `$purge-history`: removes every version but the current one.
    pub async fn purge_history(
        &self,
        instance: &InstanceName,
        rt: &ResourceType,
        id: &ResourceId,
    ) -> Result<u64, FhirError> {
        let done = sqlx::query(
            "DELETE FROM fhir_versions WHERE instance = $1 AND resource_type = $2 AND id = $3 \
             AND version < (SELECT version FROM fhir_current WHERE instance = $1 \
             AND resource_type = $2 AND id = $3)",
        )
        .bind(instance.to_string())
        .bind(rt.as_str())
        .bind(id.as_str())
        .execute(self.db.pool())
        .await?;
        Ok(done.rows_affected())
    }

    /// Versions newest first: at most `count`, changed at or after `since`, older than the
    /// `before` cursor (from [`HistoryPage::next`]).
    pub async fn history(
        &self,
        instance: &InstanceName,
        scope: &HistoryScope,
        since: Option<DateTime<Utc>>,
        before: Option<i64>,
        count: i64,
    ) -> Result<HistoryPage, FhirError> {
        // PostgreSQL's type-history index is keyed by this expression (migration 1010).
        let by_type = match self.db.backend() {
            Backend::Postgres => {
                " AND (instance || '/' || resource_type) = ($1 || '/' || $5) COLLATE \"C\""
            }
            Backend::Sqlite => " AND resource_type = $5",
        };
        let (filter, rt, id) = match scope {
            HistoryScope::System => ("", None, None),
            HistoryScope::Type(rt) => (by_type, Some(rt.as_str()), None),
            HistoryScope::Instance(rt, id) => (
                " AND resource_type = $5 AND id = $6",
                Some(rt.as_str()),
                Some(id.as_str()),
            ),
        };
        let sql = format!(
            "SELECT {VERSION_COLUMNS} FROM fhir_versions WHERE instance = $1 \
             AND last_updated_ms >= $2 AND seq < $3{filter} ORDER BY seq DESC LIMIT $4"
        );
        let mut q = sqlx::query(&sql)
            .bind(instance.to_string())
            .bind(since.map_or(i64::MIN, |t| t.timestamp_millis()))
            .bind(before.unwrap_or(i64::MAX))
            // One more than asked tells whether there is a next page.
            .bind(count + 1);
        if let Some(rt) = rt {
            q = q.bind(rt);
        }
        if let Some(id) = id {
            q = q.bind(id);
        }
        let rows = q.fetch_all(self.db.pool()).await?;
        let more = rows.len() as i64 > count;
        let rows = &rows[..rows.len().min(count.max(0) as usize)];
        let next = match rows.last() {
            Some(last) if more => Some(last.try_get("seq")?),
            _ => None,
        };
        Ok(HistoryPage {
            versions: rows
                .iter()
                .map(version_from_row)
                .collect::<Result<_, _>>()?,
            next,
        })
    }

    /// Removes every resource of an instance (the instance is being deleted).
    pub async fn delete_instance(
        tx: &mut Transaction<'_, Any>,
        instance: &InstanceName,
    ) -> Result<(), sqlx::Error> {
        // Jobs first: deleting a job's row waits for a batch that holds it, so no reindex
        // batch adds index rows after they are gone. (Export files stay: they are in the
        // caller's storage account, as Azure leaves them.)
        for table in ["fhir_reindex_jobs", "fhir_export_jobs"] {
            sqlx::query(&format!("DELETE FROM {table} WHERE instance = $1"))
                .bind(instance.to_string())
                .execute(&mut **tx)
                .await?;
        }
        crate::search::index::delete_instance(tx, instance).await?;
        for table in ["fhir_current", "fhir_versions", "fhir_search_params"] {
            sqlx::query(&format!("DELETE FROM {table} WHERE instance = $1"))
                .bind(instance.to_string())
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }

    fn wake(&self) {
        if let Some(r) = &self.relay {
            r.wake();
        }
    }
}

/// Gives every resource stored before the index was keyed (migration 1004) its key and its
/// index rows, a few hundred per transaction; returns how many it did. Run at start, before
/// the service answers, so no search misses them.
pub async fn backfill_index(db: &Database) -> Result<u64, hds_core::db::DbError> {
    const BATCH: i64 = 500;
    let mut done = 0;
    loop {
        let mut tx = db.begin().await?;
        let rows = sqlx::query(
            "SELECT c.instance, c.resource_type, c.id, v.body FROM fhir_current c \
             LEFT JOIN fhir_versions v ON v.instance = c.instance \
             AND v.resource_type = c.resource_type AND v.id = c.id AND v.version = c.version \
             WHERE c.rkey IS NULL LIMIT $1",
        )
        .bind(BATCH)
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            return Ok(done);
        }
        let mut index = IndexRows::default();
        for row in &rows {
            let inst: String = row.try_get("instance")?;
            let rt: String = row.try_get("resource_type")?;
            let id: String = row.try_get("id")?;
            let body: Option<String> = row.try_get("body")?;
            let rkey = keys::resource(&inst, &rt, &id);
            sqlx::query(
                "UPDATE fhir_current SET rkey = $4 \
                 WHERE instance = $1 AND resource_type = $2 AND id = $3",
            )
            .bind(&inst)
            .bind(&rt)
            .bind(&id)
            .bind(rkey)
            .execute(&mut *tx)
            .await?;
            // A deleted resource (no body) has a key and no index rows. (Databases this old
            // had no custom parameters: R4's are all there is to index.)
            if let Some(resource) = body.and_then(|b| serde_json::from_str::<Value>(&b).ok()) {
                index.add(&inst, &rt, rkey, &resource, &[]);
            }
        }
        index.insert(&mut tx).await?;
        tx.commit().await?;
        done += rows.len() as u64;
    }
}

/// Makes conditional creates with the same criteria take turns, until `tx` ends: without it
/// two concurrent `If-None-Exist` creates could both find nothing and both create. On
/// PostgreSQL a transaction-scoped advisory lock keyed by the criteria; on SQLite any write
/// takes the database's single write lock for the rest of the transaction.
pub async fn lock_criteria(
    tx: &mut WriteTx,
    instance: &InstanceName,
    rt: &ResourceType,
    conditions: &[crate::search::query::Condition],
) -> Result<(), FhirError> {
    let key = keys::criteria(
        &instance.to_string(),
        rt.as_str(),
        &format!("{conditions:?}"),
    );
    let conn = tx.conn().await?;
    let lock = if Backend::of(conn) == Backend::Postgres {
        sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(key)
    } else {
        sqlx::query("UPDATE fhir_current SET version = version WHERE 1 = 0")
    };
    lock.execute(&mut **conn).await?;
    Ok(())
}

/// The current version through any executor (the pool, or a transaction).
pub async fn read_in<'e, E>(
    executor: E,
    instance: &InstanceName,
    rt: &ResourceType,
    id: &ResourceId,
) -> Result<Option<Version>, FhirError>
where
    E: sqlx::Executor<'e, Database = Any>,
{
    read_stored_in(executor, instance, rt, id)
        .await?
        .map(Stored::parse)
        .transpose()
}

async fn read_stored_in<'e, E>(
    executor: E,
    instance: &InstanceName,
    rt: &ResourceType,
    id: &ResourceId,
) -> Result<Option<Stored>, FhirError>
where
    E: sqlx::Executor<'e, Database = Any>,
{
    let row = sqlx::query(
        "SELECT v.seq, v.resource_type, v.id, v.version, v.last_updated_ms, v.method, v.body \
         FROM fhir_current c JOIN fhir_versions v ON v.instance = c.instance \
         AND v.resource_type = c.resource_type AND v.id = c.id AND v.version = c.version \
         WHERE c.instance = $1 AND c.resource_type = $2 AND c.id = $3",
    )
    .bind(instance.to_string())
    .bind(rt.as_str())
    .bind(id.as_str())
    .fetch_optional(executor)
    .await?;
    row.as_ref().map(stored_from_row).transpose()
}

pub async fn vread_in<'e, E>(
    executor: E,
    instance: &InstanceName,
    rt: &ResourceType,
    id: &ResourceId,
    version: i64,
) -> Result<Option<Version>, FhirError>
where
    E: sqlx::Executor<'e, Database = Any>,
{
    vread_stored_in(executor, instance, rt, id, version)
        .await?
        .map(Stored::parse)
        .transpose()
}

async fn vread_stored_in<'e, E>(
    executor: E,
    instance: &InstanceName,
    rt: &ResourceType,
    id: &ResourceId,
    version: i64,
) -> Result<Option<Stored>, FhirError>
where
    E: sqlx::Executor<'e, Database = Any>,
{
    let row = sqlx::query(&format!(
        "SELECT {VERSION_COLUMNS} FROM fhir_versions \
         WHERE instance = $1 AND resource_type = $2 AND id = $3 AND version = $4"
    ))
    .bind(instance.to_string())
    .bind(rt.as_str())
    .bind(id.as_str())
    .bind(version)
    .fetch_optional(executor)
    .await?;
    row.as_ref().map(stored_from_row).transpose()
}

/// Sets `id` and `meta.versionId`/`meta.lastUpdated`, keeping the rest of `meta`.
fn stamp(resource: &mut Value, id: &ResourceId, version: i64, at: DateTime<Utc>) {
    if let Value::Object(map) = resource {
        map.insert("id".into(), Value::String(id.to_string()));
        let meta = map
            .entry("meta")
            .or_insert_with(|| Value::Object(Default::default()));
        if !meta.is_object() {
            *meta = Value::Object(Default::default());
        }
        if let Value::Object(meta) = meta {
            meta.insert("versionId".into(), Value::String(version.to_string()));
            meta.insert("lastUpdated".into(), Value::String(instant(at)));
        }
    }
}

/// A resource about to be created with a server-assigned id, checked and turned into its
/// rows. Making one reads nothing from the database, so a bundle makes its creations on other
/// threads while its transaction inserts the ones before (see `handlers::bundle`).
pub struct NewResource {
    resource_type: ResourceType,
    id: ResourceId,
    /// POST, or PUT of an id that does not exist yet (history's `request.method`).
    method: Method,
    rkey: i64,
    at: DateTime<Utc>,
    /// The stamped resource, when the caller wants it back (`keep`).
    resource: Option<Value>,
    /// The resource as stored.
    text: String,
    index: IndexRows,
    /// What it defines, if it is a SearchParameter.
    definition: Option<custom::Definition>,
}

impl NewResource {
    /// Stamps version 1 on `resource`, validates it as it will be stored and extracts its
    /// index rows (R4's parameters and the instance's `custom` ones); CPU work only. Unless
    /// `keep`, the parsed resource is dropped here: its stored text is all a bundle's
    /// response needs.
    #[allow(clippy::too_many_arguments)]
    pub fn prepare(
        instance: &InstanceName,
        rt: &ResourceType,
        id: &ResourceId,
        method: Method,
        mut resource: Value,
        at: DateTime<Utc>,
        keep: bool,
        custom: &InstanceParams,
    ) -> Result<Self, FhirError> {
        stamp(&mut resource, id, 1, at);
        crate::validation::check(&resource)?;
        let definition = definition_of(rt, &resource)?;
        let inst = instance.to_string();
        let rkey = keys::resource(&inst, rt.as_str(), id.as_str());
        let mut index = IndexRows::default();
        index.add(
            &inst,
            rt.as_str(),
            rkey,
            &resource,
            custom.indexed(rt.as_str()),
        );
        Ok(Self {
            definition,
            resource_type: rt.clone(),
            id: id.clone(),
            method,
            rkey,
            at,
            text: resource.to_string(),
            resource: keep.then_some(resource),
            index,
        })
    }
}

/// What a resource defines as a custom search parameter, if it is a SearchParameter.
fn definition_of(
    rt: &ResourceType,
    resource: &Value,
) -> Result<Option<custom::Definition>, FhirError> {
    if rt.as_str() == custom::SEARCH_PARAMETER {
        custom::Definition::of(resource)
    } else {
        Ok(None)
    }
}

/// Queues the rows of a prepared creation in `tx`; returns what was written and the stored
/// text. (The version's body is there only if the creation was prepared to keep it.)
pub async fn create_in(
    tx: &mut WriteTx,
    instance: &InstanceName,
    mut new: NewResource,
) -> Result<(Written, String), FhirError> {
    let inst = instance.to_string();
    let (rt, id) = (&new.resource_type, &new.id);
    if let Some(definition) = &new.definition {
        tx.record_definition(&inst, id, Some(definition)).await?;
    }
    let at_ms = new.at.timestamp_millis();
    tx.queued.current.push([
        Cell::from(inst.as_str()),
        Cell::from(rt.as_str()),
        Cell::from(id.as_str()),
        Cell::Int(1),
        Cell::Int(0),
        Cell::Int(at_ms),
        Cell::Int(new.rkey),
    ]);
    tx.queued.types.insert(rt.to_string());
    tx.queued.versions.push([
        Cell::from(inst.as_str()),
        Cell::from(rt.as_str()),
        Cell::from(id.as_str()),
        Cell::Int(1),
        Cell::Int(at_ms),
        Cell::from(new.method.as_str()),
        Cell::Text(new.text.clone()),
    ]);
    tx.queued.index.append(&mut new.index);
    enqueue_event(tx, instance, rt, id, 1, FhirResourceAction::Created)?;
    tx.send_ahead().await?;
    let written = Written {
        version: Version {
            resource_type: rt.to_string(),
            id: id.to_string(),
            version: 1,
            last_updated: new.at,
            method: new.method,
            body: new.resource,
        },
        created: true,
    };
    Ok((written, new.text))
}

/// Which of the resource keys `rkeys` have a pointer (existing or deleted resources): one
/// statement for all of a transaction's PUTs, which then create the absent ones as new.
pub async fn existing_keys(
    tx: &mut WriteTx,
    rkeys: &[i64],
) -> Result<std::collections::HashSet<i64>, FhirError> {
    let mut found = std::collections::HashSet::new();
    for chunk in rkeys.chunks(1000) {
        let marks: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT rkey FROM fhir_current WHERE rkey IN ({})",
            marks.join(", ")
        );
        let mut q = sqlx::query(&sql);
        for k in chunk {
            q = q.bind(*k);
        }
        for row in q.fetch_all(&mut **tx.conn().await?).await? {
            found.insert(row.try_get::<i64, _>("rkey")?);
        }
    }
    Ok(found)
}

/// What becomes of the versions a write replaces: kept for history and vread (`versioned`,
/// `versioned-update`), or dropped in the same transaction (`no-version`: Azure keeps no
/// history, but `meta.versionId` still counts up).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum History {
    #[default]
    Keep,
    Discard,
}

#[allow(clippy::too_many_arguments)]
pub async fn write_in(
    tx: &mut WriteTx,
    instance: &InstanceName,
    rt: &ResourceType,
    id: &ResourceId,
    mut resource: Value,
    method: Method,
    expected: Option<i64>,
    history: History,
) -> Result<Written, FhirError> {
    let now = Utc::now();
    let custom = tx.custom_params(instance).await?;
    // A server-assigned id is new: nothing to read, so its rows just join the queue.
    if method == Method::Post && expected.is_none() {
        // (A new resource has no earlier versions for `history` to drop.)
        let new =
            NewResource::prepare(instance, rt, id, Method::Post, resource, now, true, &custom)?;
        return Ok(create_in(tx, instance, new).await?.0);
    }
    let now_ms = now.timestamp_millis();
    let inst = instance.to_string();
    let rkey = keys::resource(&inst, rt.as_str(), id.as_str());
    let (version, created) =
        move_pointer(tx.conn().await?, &inst, rt, id, rkey, now_ms, expected).await?;
    stamp(&mut resource, id, version, now);
    // Checked as it will be stored (with the id and meta set here): nothing invalid is kept.
    crate::validation::check(&resource)?;
    if rt.as_str() == custom::SEARCH_PARAMETER {
        let definition = definition_of(rt, &resource)?;
        tx.record_definition(&inst, id, definition.as_ref()).await?;
    }
    if version > 1 {
        crate::search::index::remove(tx.conn().await?, rkey).await?;
        if history == History::Discard {
            discard_versions_before(tx.conn().await?, &inst, rt, id, version).await?;
        }
    }
    tx.queued.types.insert(rt.to_string());
    tx.queued.versions.push([
        Cell::from(inst.as_str()),
        Cell::from(rt.as_str()),
        Cell::from(id.as_str()),
        Cell::Int(version),
        Cell::Int(now_ms),
        Cell::from(method.as_str()),
        Cell::Text(resource.to_string()),
    ]);
    tx.queued.index.add(
        &inst,
        rt.as_str(),
        rkey,
        &resource,
        custom.indexed(rt.as_str()),
    );
    let action = if created {
        FhirResourceAction::Created
    } else {
        FhirResourceAction::Updated
    };
    enqueue_event(tx, instance, rt, id, version, action)?;
    Ok(Written {
        version: Version {
            resource_type: rt.to_string(),
            id: id.to_string(),
            version,
            last_updated: now,
            method,
            body: Some(resource),
        },
        created,
    })
}

/// Moves the pointer of an existing resource to its next version, or creates the pointer of
/// a new one; returns (version, created). The `UPDATE` takes the lock that orders writers of
/// the resource; `expected` (`If-Match`) makes it conditional.
async fn move_pointer(
    tx: &mut Transaction<'static, Any>,
    inst: &str,
    rt: &ResourceType,
    id: &ResourceId,
    rkey: i64,
    now_ms: i64,
    expected: Option<i64>,
) -> Result<(i64, bool), FhirError> {
    let mut sql = String::from(
        "UPDATE fhir_current SET version = version + 1, deleted = 0, last_updated_ms = $4 \
         WHERE instance = $1 AND resource_type = $2 AND id = $3",
    );
    if expected.is_some() {
        sql.push_str(" AND version = $5");
    }
    sql.push_str(" RETURNING version");
    let mut q = sqlx::query(&sql)
        .bind(inst)
        .bind(rt.as_str())
        .bind(id.as_str())
        .bind(now_ms);
    if let Some(v) = expected {
        q = q.bind(v);
    }
    if let Some(row) = q.fetch_optional(&mut **tx).await? {
        let version: i64 = row.try_get("version")?;
        // A write after a deletion starts the resource again: report it as created.
        return Ok((version, was_deleted(tx, inst, rt, id, version).await?));
    }
    let existing: Option<i64> = sqlx::query(
        "SELECT version FROM fhir_current WHERE instance = $1 AND resource_type = $2 AND id = $3",
    )
    .bind(inst)
    .bind(rt.as_str())
    .bind(id.as_str())
    .fetch_optional(&mut **tx)
    .await?
    .map(|r| r.try_get("version"))
    .transpose()?;
    match (existing, expected) {
        (Some(current), Some(wanted)) => Err(FhirError::VersionMismatch { current, wanted }),
        (None, Some(wanted)) => Err(FhirError::VersionMismatch { current: 0, wanted }),
        (Some(_), None) => Err(FhirError::Internal(
            "resource pointer changed under a write lock".into(),
        )),
        (None, None) => {
            let inserted = sqlx::query(
                "INSERT INTO fhir_current (instance, resource_type, id, version, deleted, last_updated_ms, rkey) \
                 VALUES ($1, $2, $3, 1, 0, $4, $5) ON CONFLICT (instance, resource_type, id) DO NOTHING",
            )
            .bind(inst)
            .bind(rt.as_str())
            .bind(id.as_str())
            .bind(now_ms)
            .bind(rkey)
            .execute(&mut **tx)
            .await?;
            if inserted.rows_affected() == 0 {
                // Another writer created it first; the client may retry.
                return Err(FhirError::Conflict(format!(
                    "{rt}/{id} was created concurrently; retry the request"
                )));
            }
            Ok((1, true))
        }
    }
}

async fn was_deleted(
    tx: &mut Transaction<'static, Any>,
    inst: &str,
    rt: &ResourceType,
    id: &ResourceId,
    version: i64,
) -> Result<bool, sqlx::Error> {
    if version <= 1 {
        return Ok(false);
    }
    let previous = sqlx::query(
        "SELECT body IS NULL AS gone FROM fhir_versions \
         WHERE instance = $1 AND resource_type = $2 AND id = $3 AND version = $4",
    )
    .bind(inst)
    .bind(rt.as_str())
    .bind(id.as_str())
    .bind(version - 1)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(match previous {
        Some(row) => row
            .try_get::<bool, _>("gone")
            .or_else(|_| row.try_get::<i64, _>("gone").map(|v| v != 0))?,
        None => false,
    })
}

pub async fn delete_in(
    tx: &mut WriteTx,
    instance: &InstanceName,
    rt: &ResourceType,
    id: &ResourceId,
    hard: bool,
    history: History,
) -> Result<Option<Version>, FhirError> {
    let inst = instance.to_string();
    let now = Utc::now();
    if rt.as_str() == custom::SEARCH_PARAMETER {
        // A deleted SearchParameter defines nothing (a no-op when there is none to delete).
        tx.record_definition(&inst, id, None).await?;
    }
    if hard {
        let conn = tx.conn().await?;
        let gone = sqlx::query(
            "DELETE FROM fhir_current WHERE instance = $1 AND resource_type = $2 AND id = $3 RETURNING version",
        )
        .bind(&inst)
        .bind(rt.as_str())
        .bind(id.as_str())
        .fetch_optional(&mut **conn)
        .await?;
        sqlx::query(
            "DELETE FROM fhir_versions WHERE instance = $1 AND resource_type = $2 AND id = $3",
        )
        .bind(&inst)
        .bind(rt.as_str())
        .bind(id.as_str())
        .execute(&mut **conn)
        .await?;
        crate::search::index::remove(conn, keys::resource(&inst, rt.as_str(), id.as_str())).await?;
        if let Some(row) = gone {
            let version: i64 = row.try_get("version")?;
            enqueue_event(tx, instance, rt, id, version, FhirResourceAction::Deleted)?;
        }
        return Ok(None);
    }
    let conn = tx.conn().await?;
    let row = sqlx::query(
        "UPDATE fhir_current SET version = version + 1, deleted = 1, last_updated_ms = $4 \
         WHERE instance = $1 AND resource_type = $2 AND id = $3 AND deleted = 0 RETURNING version",
    )
    .bind(&inst)
    .bind(rt.as_str())
    .bind(id.as_str())
    .bind(now.timestamp_millis())
    .fetch_optional(&mut **conn)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let version: i64 = row.try_get("version")?;
    crate::search::index::remove(conn, keys::resource(&inst, rt.as_str(), id.as_str())).await?;
    if history == History::Discard {
        discard_versions_before(conn, &inst, rt, id, version).await?;
    }
    tx.queued.types.insert(rt.to_string());
    tx.queued.versions.push([
        Cell::from(inst.as_str()),
        Cell::from(rt.as_str()),
        Cell::from(id.as_str()),
        Cell::Int(version),
        Cell::Int(now.timestamp_millis()),
        Cell::from(Method::Delete.as_str()),
        Cell::NullText,
    ]);
    enqueue_event(tx, instance, rt, id, version, FhirResourceAction::Deleted)?;
    Ok(Some(Version {
        resource_type: rt.to_string(),
        id: id.to_string(),
        version,
        last_updated: now,
        method: Method::Delete,
        body: None,
    }))
}

/// Removes the versions of a resource older than `version` (the one being written; it is
/// queued, not stored yet, so it is never among them).
async fn discard_versions_before(
    tx: &mut Transaction<'static, Any>,
    inst: &str,
    rt: &ResourceType,
    id: &ResourceId,
    version: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "DELETE FROM fhir_versions WHERE instance = $1 AND resource_type = $2 AND id = $3 \
         AND version < $4",
    )
    .bind(inst)
    .bind(rt.as_str())
    .bind(id.as_str())
    .bind(version)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Azure's FHIR event data: resource type, service, id, version.
fn enqueue_event(
    tx: &mut WriteTx,
    instance: &InstanceName,
    rt: &ResourceType,
    id: &ResourceId,
    version: i64,
    action: FhirResourceAction,
) -> Result<(), FhirError> {
    let event = FhirResourceEvent {
        event_id: new_event_id(),
        instance: instance.to_string(),
        action: action as i32,
        resource_type: rt.to_string(),
        resource_id: id.to_string(),
        version_id: version,
        occurred_at_unix_ms: Utc::now().timestamp_millis(),
    };
    tx.queued
        .events
        .push_event(
            topics::FHIR_RESOURCES,
            format!("{instance}/{rt}/{id}"),
            &event,
        )
        .map_err(|e| FhirError::Internal(e.to_string()))
}
