//! A program embedding lifeboat-core cancels a drill with `cluster::stop_all` and goes on:
//! the drill comes back as an error and is no failed drill in the evidence or the audit
//! log, and after `resume_after_stop` the library works again. (Its own test binary:
//! `stop_all` stops every server and client of the process.)

mod common;

use lifeboat_core::{
    ops::{
        drill::{drill, DrillOptions},
        verify::{verify, VerifyOptions},
    },
    repository::audit,
    sources::postgres::cluster,
};

#[test]
fn a_cancelled_drill_is_an_error_not_evidence_and_the_library_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let (_c, repo, src) = common::backed_up(dir.path());
    let entries_before = audit::entries(&repo).unwrap().len();

    let marker = dir.path().join("hook-started");
    let opts = DrillOptions {
        hooks: vec![format!("touch {} && sleep 60", marker.display())],
        ..DrillOptions::default()
    };
    let result = std::thread::scope(|s| {
        let drilling = s.spawn(|| drill(&repo, &src, &opts));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        while !marker.exists() {
            assert!(std::time::Instant::now() < deadline, "the hook never ran");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        cluster::stop_all();
        drilling.join().unwrap()
    });
    let e = result.expect_err("a cancelled drill is an error");
    assert!(e.to_string().contains("interrupted"), "{e}");
    // told apart by its kind, not its words
    assert_eq!(e.kind(), lifeboat_core::ErrorKind::Interrupted, "{e}");
    assert_eq!(e.kind().exit_code(), 130);
    assert!(
        lifeboat_core::ops::evidence::drills(&repo)
            .unwrap()
            .is_empty(),
        "no drill report stored"
    );
    assert_eq!(audit::entries(&repo).unwrap().len(), entries_before);

    cluster::resume_after_stop();
    assert!(verify(&repo, &VerifyOptions::default()).unwrap().ok());
    let again = drill(&repo, &src, &DrillOptions::default()).unwrap();
    assert!(again.passed, "{:?}", again.failures());
}
