//! An interrupt during a physical restore's unpack: the data directory being filled is
//! removed when the run created it, emptied when it was given empty, and said, so that the
//! retry is not refused "not empty". (Its own test binary: `stop_all` acts on the whole
//! process.)

use lifeboat_core::sources::postgres::cluster;

#[test]
fn an_interrupt_removes_or_empties_the_directory_being_filled() {
    let base = tempfile::tempdir().unwrap();
    let made = base.path().join("made");
    let given = base.path().join("given");
    for d in [&made, &given] {
        std::fs::create_dir_all(d.join("base/1")).unwrap();
        std::fs::write(d.join("PG_VERSION"), "15\n").unwrap();
        std::fs::write(d.join("base/1/1259"), [0u8; 8192]).unwrap();
    }
    let finished = base.path().join("finished");
    std::fs::create_dir_all(&finished).unwrap();
    std::fs::write(finished.join("PG_VERSION"), "15\n").unwrap();
    let _made = cluster::filling(&made, true);
    let _given = cluster::filling(&given, false);
    // filled to the end before the interrupt: a whole data directory stays
    drop(cluster::filling(&finished, true));
    let said = cluster::stop_all();
    cluster::resume_after_stop();
    assert!(!made.exists(), "{said:?}");
    assert!(given.is_dir(), "{said:?}");
    assert_eq!(std::fs::read_dir(&given).unwrap().count(), 0, "{said:?}");
    assert!(finished.join("PG_VERSION").exists());
    assert!(
        said.iter()
            .any(|l| l.starts_with("removed ") && l.contains("made"))
            && said
                .iter()
                .any(|l| l.starts_with("emptied ") && l.contains("given")),
        "{said:?}"
    );
}
