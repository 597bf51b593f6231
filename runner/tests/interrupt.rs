//! The interrupt flag is process-wide, so this test has a process of its own.

use std::time::Duration;

use runner::{interrupt, Cmd, RunError, Runner, SystemRunner};

#[test]
fn an_interrupt_kills_the_running_command_and_refuses_new_ones() {
    let r = SystemRunner::new();
    let t = std::thread::spawn(|| {
        std::thread::sleep(Duration::from_millis(200));
        interrupt::request();
    });
    let err = r
        .output(&Cmd::new("/bin/sh").args(["-c", "sleep 30 & sleep 30"]))
        .unwrap_err();
    t.join().unwrap();
    assert!(matches!(err, RunError::Interrupted { .. }), "{err}");
    let again = r.output(&Cmd::new("/bin/true")).unwrap_err();
    assert!(matches!(again, RunError::Interrupted { .. }), "{again}");
    interrupt::clear();
    assert!(r.run(&Cmd::new("/bin/true")).is_ok());
}
