//! The database seam, run against PostgreSQL (the real server) and SQLite.

use hds_core::db::{Cell, Database, Migrations, Rows};
use sqlx::Row;

fn widgets() -> Migrations {
    Migrations {
        postgres: sqlx::migrate!("./tests/migrations/postgres"),
        sqlite: sqlx::migrate!("./tests/migrations/sqlite"),
    }
}

struct Env {
    db: Database,
    _dir: Option<tempfile::TempDir>,
}

impl Env {
    async fn postgres() -> Self {
        Env {
            db: hds_testkit::pg_database("db").await,
            _dir: None,
        }
    }
    async fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        Env {
            db: hds_testkit::sqlite_database(dir.path(), "db").await,
            _dir: Some(dir),
        }
    }
}

async fn count(db: &Database) -> i64 {
    sqlx::query("SELECT COUNT(*) AS n FROM widgets")
        .fetch_one(db.pool())
        .await
        .unwrap()
        .get("n")
}

async fn migrations_run_at_start_and_again(env: Env) {
    env.db.migrate(&widgets()).await.unwrap();
    // A second component's migrations in the same database, and a rerun of both.
    env.db
        .migrate(&hds_core::outbox::migrations())
        .await
        .unwrap();
    env.db.migrate(&widgets()).await.unwrap();
    env.db
        .migrate(&hds_core::outbox::migrations())
        .await
        .unwrap();
    assert_eq!(count(&env.db).await, 0);
    assert_eq!(hds_core::outbox::pending(&env.db).await.unwrap(), 0);
}

async fn transactions_are_all_or_nothing(env: Env) {
    env.db.migrate(&widgets()).await.unwrap();
    let mut tx = env.db.begin().await.unwrap();
    for name in ["a", "b"] {
        sqlx::query("INSERT INTO widgets (name, data) VALUES ($1, $2)")
            .bind(name)
            .bind(vec![1u8, 2, 3])
            .execute(&mut *tx)
            .await
            .unwrap();
    }
    tx.rollback().await.unwrap();
    assert_eq!(count(&env.db).await, 0);

    let mut tx = env.db.begin().await.unwrap();
    sqlx::query("INSERT INTO widgets (name) VALUES ($1)")
        .bind("a")
        .execute(&mut *tx)
        .await
        .unwrap();
    // A unique violation fails the statement; the caller abandons the transaction.
    assert!(sqlx::query("INSERT INTO widgets (name) VALUES ($1)")
        .bind("a")
        .execute(&mut *tx)
        .await
        .is_err());
    drop(tx);
    assert_eq!(count(&env.db).await, 0);

    let mut tx = env.db.begin().await.unwrap();
    sqlx::query("INSERT INTO widgets (name, data) VALUES ($1, $2)")
        .bind("c")
        .bind(vec![9u8; 3])
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let row = sqlx::query("SELECT name, data FROM widgets WHERE name = $1 AND $2 = $2")
        .bind("c")
        .bind(7i64)
        .fetch_one(env.db.pool())
        .await
        .unwrap();
    assert_eq!(row.get::<String, _>("name"), "c");
    assert_eq!(row.get::<Vec<u8>, _>("data"), vec![9u8; 3]);
    env.db.check().await.unwrap();
}

async fn many_rows_go_in_few_statements_and_come_back_intact(env: Env) {
    env.db.migrate(&widgets()).await.unwrap();
    // 343 = 256 + 64 + 16 + 4 + 3: every statement size is used.
    let mut rows = Rows::new("widgets", &["name", "data"]);
    for i in 0..343u32 {
        let data = (i % 2 == 0).then(|| i.to_be_bytes().to_vec());
        rows.push([
            Cell::Text(format!("w{i}")),
            data.map_or(Cell::NullBytes, Cell::Bytes),
        ]);
    }
    assert_eq!(rows.len(), 343);
    let mut tx = env.db.begin().await.unwrap();
    rows.insert(&mut tx).await.unwrap();
    assert!(rows.is_empty());
    tx.commit().await.unwrap();
    assert_eq!(count(&env.db).await, 343);
    let stored = sqlx::query("SELECT name, data FROM widgets ORDER BY id")
        .fetch_all(env.db.pool())
        .await
        .unwrap();
    for (i, row) in stored.iter().enumerate() {
        assert_eq!(row.get::<String, _>("name"), format!("w{i}"));
        let data: Option<Vec<u8>> = row.get("data");
        assert_eq!(
            data,
            (i % 2 == 0).then(|| (i as u32).to_be_bytes().to_vec())
        );
    }

    // A failing row fails the insert; the transaction is abandoned with nothing stored.
    let mut rows = Rows::new("widgets", &["name", "data"]);
    rows.push([Cell::Text("new".into()), Cell::NullBytes]);
    rows.push([Cell::Text("w1".into()), Cell::NullBytes]);
    let mut tx = env.db.begin().await.unwrap();
    assert!(rows.insert(&mut tx).await.is_err());
    drop(tx);
    assert_eq!(count(&env.db).await, 343);
}

macro_rules! db_contract {
    ($backend:ident) => {
        mod $backend {
            #[tokio::test]
            async fn migrations_run_at_start_and_again() {
                super::migrations_run_at_start_and_again(super::Env::$backend().await).await
            }
            #[tokio::test]
            async fn transactions_are_all_or_nothing() {
                super::transactions_are_all_or_nothing(super::Env::$backend().await).await
            }
            #[tokio::test]
            async fn many_rows_go_in_few_statements_and_come_back_intact() {
                super::many_rows_go_in_few_statements_and_come_back_intact(
                    super::Env::$backend().await,
                )
                .await
            }
        }
    };
}

db_contract!(postgres);
db_contract!(sqlite);

#[tokio::test]
async fn unreachable_database_is_a_clear_error() {
    let settings = hds_core::db::DatabaseSettings {
        url: "postgres://nobody:secret@127.0.0.1:1/none".into(),
        schema: None,
        max_connections: 1,
        acquire_timeout_secs: 2,
    };
    let err = Database::connect(&settings).await.unwrap_err().to_string();
    assert!(err.contains("cannot connect to the database"), "{err}");
    assert!(!err.contains("secret"), "password leaked: {err}");
    let err = Database::connect(&hds_core::db::DatabaseSettings::new("mysql://x"))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("database.url"), "{err}");
}
