//! MCP requests in flight (a POST to `/mcp` counts from its arrival until its answer's body
//! is done or dropped): bounded (429 past [`MAX_IN_FLIGHT`]), refused once the server is
//! shutting down (503), and waited for by the graceful shutdown, so that a call running when
//! SIGTERM came gets its answer before the sessions close.

use axum::http::StatusCode;
use tokio::sync::watch;

/// The most MCP requests in flight at once; one more gets 429.
pub const MAX_IN_FLIGHT: usize = 1024;

/// The count, shared by the layer and the shutdown.
#[derive(Clone)]
pub struct InFlight {
    count: watch::Sender<usize>,
    closing: watch::Sender<bool>,
}

/// Held by one request until its answer is done; counts it down when dropped.
pub struct Ticket(watch::Sender<usize>);

impl Drop for Ticket {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

impl InFlight {
    pub fn new() -> Self {
        InFlight {
            count: watch::Sender::new(0),
            closing: watch::Sender::new(false),
        }
    }

    /// Admits one request, or says why not.
    pub fn admit(&self) -> Result<Ticket, (StatusCode, &'static str)> {
        if *self.closing.borrow() {
            return Err((
                StatusCode::SERVICE_UNAVAILABLE,
                "Service Unavailable: the server is shutting down\n",
            ));
        }
        let mut admitted = false;
        self.count.send_if_modified(|n| {
            admitted = *n < MAX_IN_FLIGHT;
            if admitted {
                *n += 1;
            }
            admitted
        });
        if admitted {
            Ok(Ticket(self.count.clone()))
        } else {
            Err((
                StatusCode::TOO_MANY_REQUESTS,
                "Too Many Requests: 1024 MCP requests are in flight; retry when one has answered\n",
            ))
        }
    }

    /// Refuses new requests from now on.
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    /// Requests in flight now.
    pub fn count(&self) -> usize {
        *self.count.borrow()
    }

    /// Resolves when no request is in flight.
    pub async fn drained(&self) {
        let mut rx = self.count.subscribe();
        let _ = rx.wait_for(|n| *n == 0).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tickets_count_up_and_down_and_closing_refuses() {
        let f = InFlight::new();
        let a = f
            .admit()
            .unwrap_or_else(|_| panic!("the first request was refused"));
        let b = f
            .admit()
            .unwrap_or_else(|_| panic!("the second request was refused"));
        assert_eq!(f.count(), 2);
        drop(a);
        assert_eq!(f.count(), 1);
        f.close();
        assert!(matches!(
            f.admit(),
            Err((StatusCode::SERVICE_UNAVAILABLE, _))
        ));
        drop(b);
        assert_eq!(f.count(), 0);
    }

    #[test]
    fn past_the_bound_a_request_gets_429() {
        let f = InFlight::new();
        let held: Vec<Ticket> = (0..MAX_IN_FLIGHT)
            .map(|_| {
                f.admit()
                    .unwrap_or_else(|_| panic!("refused below the bound"))
            })
            .collect();
        assert!(matches!(f.admit(), Err((StatusCode::TOO_MANY_REQUESTS, _))));
        drop(held);
        assert!(f.admit().is_ok());
    }
}
