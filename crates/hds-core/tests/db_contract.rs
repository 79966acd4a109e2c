//! The database seam, run against PostgreSQL (the real server) and SQLite.

use hds_core::db::{insert_all, Cell, Column, Database, Migrations, Rows, SqlType};
use sqlx::Row;

const WIDGETS: &[Column] = &[("name", SqlType::Text), ("data", SqlType::Bytea)];
const GAUGES: &[Column] = &[
    ("label", SqlType::Text),
    ("reading", SqlType::Double),
    ("ticks", SqlType::BigInt),
];

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
    // 343 = 256 + 64 + 16 + 4 + 3: on SQLite every statement size is used.
    let mut rows = Rows::new("widgets", WIDGETS);
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
    let mut rows = Rows::new("widgets", WIDGETS);
    rows.push([Cell::Text("new".into()), Cell::NullBytes]);
    rows.push([Cell::Text("w1".into()), Cell::NullBytes]);
    let mut tx = env.db.begin().await.unwrap();
    assert!(rows.insert(&mut tx).await.is_err());
    drop(tx);
    assert_eq!(count(&env.db).await, 343);
}

/// Texts that an encoding of values could get wrong: quotes, backslashes, the array syntax's
/// own characters, the word NULL, blanks, non-ASCII.
const AWKWARD: [&str; 8] = [
    "",
    " padded ",
    r#"say "hi""#,
    r"back\slash\",
    "{a,b}",
    "NULL",
    "Zoë, 東京",
    "line\nbreak\ttab",
];

async fn several_tables_go_in_together_and_values_survive(env: Env) {
    env.db.migrate(&widgets()).await.unwrap();
    let mut widgets = Rows::new("widgets", WIDGETS);
    let mut gauges = Rows::new("gauges", GAUGES);
    for (i, text) in AWKWARD.iter().enumerate() {
        widgets.push([
            Cell::Text(text.to_string()),
            Cell::Bytes(
                text.as_bytes()
                    .iter()
                    .chain(&[0, 255, b'\\'])
                    .copied()
                    .collect(),
            ),
        ]);
        let label = if i % 2 == 0 {
            Cell::Text(text.to_string())
        } else {
            Cell::NullText
        };
        gauges.push([
            label,
            Cell::Float(0.1 * i as f64 - 1e-7),
            Cell::Int(i64::MIN + i as i64),
        ]);
    }
    let mut tx = env.db.begin().await.unwrap();
    insert_all(&mut tx, &mut [&mut widgets, &mut gauges])
        .await
        .unwrap();
    assert!(widgets.is_empty() && gauges.is_empty());
    tx.commit().await.unwrap();

    let stored = sqlx::query("SELECT name, data FROM widgets ORDER BY id")
        .fetch_all(env.db.pool())
        .await
        .unwrap();
    assert_eq!(stored.len(), AWKWARD.len());
    for (row, text) in stored.iter().zip(AWKWARD) {
        assert_eq!(row.get::<String, _>("name"), text);
        let mut bytes = text.as_bytes().to_vec();
        bytes.extend([0, 255, b'\\']);
        assert_eq!(row.get::<Vec<u8>, _>("data"), bytes);
    }
    let stored = sqlx::query("SELECT label, reading, ticks FROM gauges ORDER BY id")
        .fetch_all(env.db.pool())
        .await
        .unwrap();
    assert_eq!(stored.len(), AWKWARD.len());
    for (i, row) in stored.iter().enumerate() {
        let label: Option<String> = row.get("label");
        assert_eq!(label.as_deref(), (i % 2 == 0).then_some(AWKWARD[i]));
        assert_eq!(row.get::<f64, _>("reading"), 0.1 * i as f64 - 1e-7);
        assert_eq!(row.get::<i64, _>("ticks"), i64::MIN + i as i64);
    }

    // One failing row fails them all: a duplicate widget takes the gauges with it.
    widgets.push([Cell::Text("fresh".into()), Cell::NullBytes]);
    widgets.push([Cell::Text(AWKWARD[2].into()), Cell::NullBytes]);
    gauges.push([Cell::NullText, Cell::Float(1.0), Cell::Int(1)]);
    let mut tx = env.db.begin().await.unwrap();
    assert!(insert_all(&mut tx, &mut [&mut gauges, &mut widgets])
        .await
        .is_err());
    drop(tx);
    assert_eq!(count(&env.db).await, AWKWARD.len() as i64);
    let gauges: i64 = sqlx::query("SELECT COUNT(*) AS n FROM gauges")
        .fetch_one(env.db.pool())
        .await
        .unwrap()
        .get("n");
    assert_eq!(gauges, AWKWARD.len() as i64);
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
            async fn several_tables_go_in_together_and_values_survive() {
                super::several_tables_go_in_together_and_values_survive(
                    super::Env::$backend().await,
                )
                .await
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
