//! When an MCP session is idle. rmcp's own session keep-alive counts only messages, so a
//! session whose one call runs longer than the keep-alive without a progress notification
//! would be closed under that call. Here a session is busy while any request of it is open
//! (a call waiting for its task) and idle from the end of its last one; the sweeper closes
//! sessions idle longer than `--http-session-idle`. A standalone event stream (`GET /mcp`)
//! does not keep its session busy — a client could otherwise hold a session, and its
//! memory, for ever by leaving a stream open — but each session may hold only a few
//! ([`Activity::stream`]), and closing the session ends them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmcp::transport::streamable_http_server::session::SessionManager;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use std::time::Instant;

/// One session's requests.
#[derive(Debug)]
struct Entry {
    /// The end of its last request (or the start of one still open).
    last: Instant,
    /// Its requests open now.
    open: usize,
    /// Its standalone event streams open now.
    streams: usize,
}

impl Entry {
    fn new() -> Entry {
        Entry {
            last: Instant::now(),
            open: 0,
            streams: 0,
        }
    }
}

/// Each session's open requests and the end of its last one.
#[derive(Debug, Default)]
pub struct Activity {
    map: Mutex<HashMap<Arc<str>, Entry>>,
}

/// One standalone event stream of a session, counted until it is dropped.
pub struct Stream {
    activity: Arc<Activity>,
    id: Arc<str>,
}

impl Drop for Stream {
    fn drop(&mut self) {
        if let Ok(mut map) = self.activity.map.lock()
            && let Some(e) = map.get_mut(&self.id)
        {
            e.streams = e.streams.saturating_sub(1);
            e.last = Instant::now();
        }
    }
}

/// One open request of a session; the session is busy until it is dropped.
pub struct Open {
    activity: Arc<Activity>,
    id: Arc<str>,
}

impl Drop for Open {
    fn drop(&mut self) {
        if let Ok(mut map) = self.activity.map.lock()
            && let Some(e) = map.get_mut(&self.id)
        {
            e.open = e.open.saturating_sub(1);
            e.last = Instant::now();
        }
    }
}

impl Activity {
    /// A request of session `id` opens.
    pub fn open(self: &Arc<Self>, id: &str) -> Open {
        let id: Arc<str> = Arc::from(id);
        if let Ok(mut map) = self.map.lock() {
            let e = map.entry(id.clone()).or_insert_with(Entry::new);
            e.open += 1;
            e.last = Instant::now();
        }
        Open {
            activity: self.clone(),
            id,
        }
    }

    /// A standalone event stream of session `id` opens, unless it holds `max` already
    /// (`None`). Opening one counts as activity, not as a request open.
    pub fn stream(self: &Arc<Self>, id: &str, max: usize) -> Option<Stream> {
        let id: Arc<str> = Arc::from(id);
        let mut map = self.map.lock().ok()?;
        let e = map.entry(id.clone()).or_insert_with(Entry::new);
        if e.streams >= max {
            return None;
        }
        e.streams += 1;
        e.last = Instant::now();
        Some(Stream {
            activity: self.clone(),
            id,
        })
    }

    /// Sessions with nothing open for longer than `idle`, and forgets sessions `live` no
    /// longer holds.
    fn idle(&self, idle: Duration, now: Instant, live: &dyn Fn(&str) -> bool) -> Vec<Arc<str>> {
        let Ok(mut map) = self.map.lock() else {
            return Vec::new();
        };
        map.retain(|id, _| live(id));
        map.iter()
            .filter(|(_, e)| e.open == 0 && now.saturating_duration_since(e.last) > idle)
            .map(|(id, _)| id.clone())
            .collect()
    }
}

/// Closes idle sessions until the manager's sessions are gone with the server (runs as a
/// task; checks a few times per idle period).
pub async fn sweep(activity: Arc<Activity>, manager: Arc<LocalSessionManager>, idle: Duration) {
    let mut tick =
        tokio::time::interval((idle / 4).clamp(Duration::from_millis(50), Duration::from_secs(30)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let live: std::collections::HashSet<String> = manager
            .sessions
            .read()
            .await
            .keys()
            .map(|k| k.to_string())
            .collect();
        // A session that never had a request counted (it should not happen) is counted
        // from now.
        for id in &live {
            if let Ok(mut map) = activity.map.lock() {
                map.entry(Arc::from(id.as_str())).or_insert_with(Entry::new);
            }
        }
        for id in activity.idle(idle, Instant::now(), &|id| live.contains(id)) {
            tracing::debug!(session = %id, "closing an idle MCP session");
            let _ = manager.close_session(&id.to_string().into()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_with_a_request_open_is_never_idle_and_is_idle_after_its_end() {
        let a = Arc::new(Activity::default());
        let long_call = a.open("busy");
        drop(a.open("quiet"));
        let idle = Duration::from_secs(5);
        let all = |_: &str| true;
        let later = Instant::now() + Duration::from_secs(10);
        assert_eq!(a.idle(idle, later, &all), vec![Arc::from("quiet")]);
        drop(long_call);
        let ended = Instant::now();
        assert!(
            !a.idle(idle, ended + Duration::from_secs(3), &all)
                .contains(&Arc::from("busy")),
            "idle time counts from the end of the last request"
        );
        let later = ended + Duration::from_secs(6);
        assert_eq!(a.idle(idle, later, &all).len(), 2);
        // Sessions the manager no longer holds are forgotten.
        assert_eq!(
            a.idle(idle, later, &|id| id != "quiet"),
            vec![Arc::from("busy")]
        );
    }

    #[test]
    fn an_open_event_stream_neither_keeps_its_session_busy_nor_passes_its_cap() {
        let a = Arc::new(Activity::default());
        let max = 2;
        let streams: Vec<Stream> = (0..max)
            .map(|i| {
                a.stream("s", max)
                    .unwrap_or_else(|| panic!("stream {i} refused"))
            })
            .collect();
        assert!(
            a.stream("s", max).is_none(),
            "stream {} passed the cap",
            max + 1
        );
        assert!(
            a.stream("other", max).is_some(),
            "another session's cap was taken"
        );
        let idle = Duration::from_secs(5);
        let later = Instant::now() + Duration::from_secs(10);
        assert!(
            a.idle(idle, later, &|_| true).contains(&Arc::from("s")),
            "a session whose only activity is an open stream was not idle"
        );
        drop(streams);
        assert!(
            a.stream("s", max).is_some(),
            "a closed stream still counted"
        );
    }
}
