//! Comparing a database with its truth in page ranges gives the same verdict as reading each
//! table whole, on a real PostgreSQL: every row is counted once, a changed row is found
//! whichever range holds it, and inheritance children are not counted in their parent.

use lifeboat_core::sources::postgres::{
    compare::compare_in_pieces,
    truth::{TableTruth, Truth},
};
use lifeboat_testing::cluster;

fn table(schema: &str, name: &str, copy: &str) -> TableTruth {
    TableTruth {
        schema: schema.into(),
        table: name.into(),
        copy: copy.into(),
        rows: 0,
        hash: String::new(),
    }
}

#[test]
fn page_ranges_count_every_row_once_and_find_a_change() {
    let c = cluster();
    c.sql("postgres", "CREATE DATABASE pieces").unwrap();
    c.sql(
        "pieces",
        r#"CREATE TABLE public.big (id int, v text);
           INSERT INTO public.big SELECT g, repeat(md5(g::text), 6) FROM generate_series(1, 6000) g;
           CREATE TABLE public.kid () INHERITS (public.big);
           INSERT INTO public.kid SELECT g, 'child' FROM generate_series(1, 50) g;
           CREATE SCHEMA "we(ird";
           CREATE TABLE "we(ird"."t (x)" (id int, "a)""(b" text);
           INSERT INTO "we(ird"."t (x)" SELECT g, repeat('x', 300) FROM generate_series(1, 3000) g;"#,
    )
    .unwrap();
    let mut truth = Truth {
        tables: vec![
            table("public", "big", "COPY public.big (id, v) FROM stdin;"),
            table("public", "kid", "COPY public.kid (id, v) FROM stdin;"),
            table(
                "we(ird",
                "t (x)",
                r#"COPY "we(ird"."t (x)" (id, "a)""(b") FROM stdin;"#,
            ),
        ],
        ..Truth::default()
    };
    let conn = c.conn();
    // the truth as whole-table reads see it
    let whole = compare_in_pieces(&conn, "pieces", &truth, 1, u64::MAX, None).unwrap();
    assert_eq!(whole.reads, 3);
    for (t, read) in truth.tables.iter_mut().zip(&whole.tables) {
        t.rows = read.actual_rows;
        t.hash.clone_from(&read.actual_hash);
    }
    assert_eq!(
        truth.tables.iter().map(|t| t.rows).collect::<Vec<_>>(),
        [6000, 50, 3000],
        "the parent's rows do not include its child's"
    );

    let cut = compare_in_pieces(&conn, "pieces", &truth, 8, 8192, None).unwrap();
    assert!(
        cut.reads > 6,
        "the big tables are read in page ranges ({} reads)",
        cut.reads
    );
    assert!(cut.ok(), "{}", cut.describe_failures());

    // a row near the end of the table: in the last, open-ended range
    c.sql(
        "pieces",
        "UPDATE ONLY public.big SET v = 'changed' WHERE id = 5999",
    )
    .unwrap();
    let changed = compare_in_pieces(&conn, "pieces", &truth, 8, 8192, None).unwrap();
    assert!(!changed.ok());
    assert_eq!(
        changed.describe_failures(),
        "public.big: content differs (6000 rows)"
    );
    // a deleted row in the first range
    c.sql("pieces", r#"DELETE FROM "we(ird"."t (x)" WHERE id = 1"#)
        .unwrap();
    let deleted = compare_in_pieces(&conn, "pieces", &truth, 8, 8192, None).unwrap();
    assert!(
        deleted
            .describe_failures()
            .contains("we(ird.t (x): 2999 rows, expected 3000"),
        "{}",
        deleted.describe_failures()
    );
}

/// Many small tables are read several to one psql: each table's rows and hash are what a
/// read of that table alone gives (a row that looks like the boundary between two tables
/// included), and a change is charged to the table that has it.
#[test]
fn small_tables_read_in_batches_keep_each_table_apart() {
    let c = cluster();
    c.sql("postgres", "CREATE DATABASE many").unwrap();
    c.sql(
        "many",
        r#"DO $$ BEGIN FOR i IN 0..119 LOOP
             EXECUTE format('CREATE TABLE public.t%s (id int, v text)', i);
             EXECUTE format('INSERT INTO public.t%s SELECT g, md5((g * %s)::text) FROM generate_series(1, %s) g', i, i + 1, i % 7 + 1);
           END LOOP; END $$;
           INSERT INTO public.t0 VALUES (100, E'\\lifeboat-table 3'), (101, E'x\nlifeboat-table 4');"#,
    )
    .unwrap();
    let tables: Vec<TableTruth> = (0..120)
        .map(|i| {
            table(
                "public",
                &format!("t{i}"),
                &format!("COPY public.t{i} (id, v) FROM stdin;"),
            )
        })
        .collect();
    let conn = c.conn();
    // the truth, table by table: fewer tables at a time than are ever batched
    let mut truth = Truth {
        tables: tables.clone(),
        ..Truth::default()
    };
    for (k, chunk) in tables.chunks(40).enumerate() {
        let part = Truth {
            tables: chunk.to_vec(),
            ..Truth::default()
        };
        let read = compare_in_pieces(&conn, "many", &part, 2, u64::MAX, None).unwrap();
        assert_eq!(read.batched_tables, 0);
        for (j, r) in read.tables.iter().enumerate() {
            let t = &mut truth.tables[k * 40 + j];
            t.rows = r.actual_rows;
            t.hash.clone_from(&r.actual_hash);
        }
    }
    assert_eq!(
        truth.tables[0].rows, 3,
        "the boundary-like rows are rows of t0"
    );

    let batched = compare_in_pieces(&conn, "many", &truth, 2, u64::MAX, None).unwrap();
    assert_eq!(batched.batched_tables, 120);
    assert!(batched.reads < 10, "{} reads", batched.reads);
    assert!(batched.ok(), "{}", batched.describe_failures());

    c.sql("many", "UPDATE public.t57 SET v = 'changed' WHERE id = 1")
        .unwrap();
    let changed = compare_in_pieces(&conn, "many", &truth, 2, u64::MAX, None).unwrap();
    assert_eq!(
        changed.describe_failures(),
        format!("public.t57: content differs ({} rows)", 57 % 7 + 1)
    );
}
