//! `TestRedis` must never mistake another server on its port for its own.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Stdio};

use huddle_testkit::TestRedis;

/// Another process took the port while ours was stopped: `restart` must
/// refuse (its clients would talk to a stranger), not accept the stranger's
/// PONG.
///
/// Seen to fail with the mechanism off: with `spawn` waiting for any PONG
/// (as before) instead of its own pid in `INFO server`, `restart` returned
/// normally with the stranger answering on the port.
#[test]
fn restart_refuses_a_port_another_server_took() {
    let mut redis = TestRedis::start();
    redis.stop();
    let mut stranger = Command::new("redis-server")
        .args([
            "--port",
            &redis.port().to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while redis.command(&["PING"]).is_none_or(|o| !o.contains("PONG")) {
        assert!(
            std::time::Instant::now() < deadline,
            "stranger never came up"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let restarted = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| redis.restart()));
    let _ = stranger.kill();
    let _ = stranger.wait();
    assert!(restarted.is_err(), "restart accepted another server");
}

#[test]
fn start_gives_each_caller_its_own_server() {
    let a = TestRedis::start();
    let b = TestRedis::start();
    assert_ne!(a.port(), b.port());
    a.command(&["SET", "k", "a"]).unwrap();
    assert_eq!(b.command(&["GET", "k"]).unwrap().trim(), "");
}
