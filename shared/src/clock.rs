//! The one source of "now". Every business rule reads time through a [`Clock`],
//! so tests (and the dev-only test clock) can move it.

use std::sync::{Arc, RwLock};

use chrono::{DateTime, Duration, Utc};

/// Where services read the current time from.
pub trait Clock: Send + Sync + std::fmt::Debug + 'static {
    fn now(&self) -> DateTime<Utc>;
}

/// A shared, cloneable handle on a clock.
pub type SharedClock = Arc<dyn Clock>;

/// Wall time, for production.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that only moves when told to: tests and `--test-clock` dev runs.
#[derive(Debug, Clone)]
pub struct TestClock {
    now: Arc<RwLock<DateTime<Utc>>>,
}

impl TestClock {
    pub fn new(start: DateTime<Utc>) -> Self {
        Self {
            now: Arc::new(RwLock::new(start)),
        }
    }

    /// Sets the time (it may go backwards: tests own it).
    pub fn set(&self, to: DateTime<Utc>) {
        // A poisoned lock only means a panicking writer; the value is still a valid instant.
        *self.now.write().unwrap_or_else(|e| e.into_inner()) = to;
    }

    /// Moves the time forward by `by`.
    pub fn advance(&self, by: Duration) {
        let mut now = self.now.write().unwrap_or_else(|e| e.into_inner());
        *now += by;
    }
}

impl Clock for TestClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.read().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_clock_moves_only_when_told() {
        let start = DateTime::from_timestamp(1_700_000_000, 0).expect("valid");
        let clock = TestClock::new(start);
        assert_eq!(clock.now(), start);
        clock.advance(Duration::minutes(10));
        assert_eq!(clock.now(), start + Duration::minutes(10));
        let shared: SharedClock = Arc::new(clock.clone());
        clock.set(start);
        assert_eq!(shared.now(), start);
    }
}

/// The dev-only `TestClockService`, moving a [`TestClock`] shared with the services.
pub mod control {
    use tonic::{Request, Response, Status};

    use super::{Clock, TestClock};
    use crate::proto::testing::v1 as pb;
    use crate::time::{from_proto, to_proto};

    /// Serves `marketplace.testing.v1.TestClockService` for one clock.
    #[derive(Debug, Clone)]
    pub struct TestClockApi {
        clock: TestClock,
    }

    impl TestClockApi {
        pub fn new(clock: TestClock) -> Self {
            Self { clock }
        }

        /// The service, authenticated like every other.
        pub fn service(
            self,
            verifier: &crate::auth::Verifier,
        ) -> tonic::service::interceptor::InterceptedService<
            pb::test_clock_service_server::TestClockServiceServer<Self>,
            impl tonic::service::Interceptor + Clone + use<>,
        > {
            pb::test_clock_service_server::TestClockServiceServer::with_interceptor(
                self,
                verifier.interceptor(),
            )
        }

        fn now(&self) -> Option<prost_types::Timestamp> {
            Some(to_proto(self.clock.now()))
        }
    }

    fn invalid(field: &str, description: &str) -> Status {
        crate::status::invalid_argument(
            "testing.marketplace",
            &[crate::status::FieldViolation::new(field, description)],
        )
    }

    #[tonic::async_trait]
    impl pb::test_clock_service_server::TestClockService for TestClockApi {
        async fn get_time(
            &self,
            _: Request<pb::GetTimeRequest>,
        ) -> Result<Response<pb::GetTimeResponse>, Status> {
            Ok(Response::new(pb::GetTimeResponse { now: self.now() }))
        }

        async fn set_time(
            &self,
            request: Request<pb::SetTimeRequest>,
        ) -> Result<Response<pb::SetTimeResponse>, Status> {
            let to = request
                .get_ref()
                .now
                .as_ref()
                .and_then(from_proto)
                .ok_or_else(|| invalid("now", "must be a valid time between 2000 and 2100"))?;
            self.clock.set(to);
            tracing::info!(now = %to, "test clock set");
            Ok(Response::new(pb::SetTimeResponse { now: self.now() }))
        }

        async fn advance_time(
            &self,
            request: Request<pb::AdvanceTimeRequest>,
        ) -> Result<Response<pb::AdvanceTimeResponse>, Status> {
            let by = request
                .get_ref()
                .by
                .as_ref()
                .filter(|d| d.seconds > 0 || (d.seconds == 0 && d.nanos > 0))
                .filter(|d| d.seconds < 100 * 365 * 86_400 && (0..1_000_000_000).contains(&d.nanos))
                .ok_or_else(|| invalid("by", "must be a positive duration under 100 years"))?;
            self.clock.advance(
                chrono::Duration::seconds(by.seconds)
                    + chrono::Duration::nanoseconds(i64::from(by.nanos)),
            );
            tracing::info!(now = %self.clock.now(), "test clock advanced");
            Ok(Response::new(pb::AdvanceTimeResponse { now: self.now() }))
        }
    }
}

/// The benchmark's echo service: answers at once, so a load run can measure
/// the ceiling of a unary call served the same way as the real services.
pub mod echo {
    use tonic::{Request, Response, Status};

    use crate::proto::testing::v1 as pb;

    #[derive(Debug, Clone, Default)]
    pub struct EchoApi;

    #[tonic::async_trait]
    impl pb::echo_service_server::EchoService for EchoApi {
        async fn echo(
            &self,
            request: Request<pb::EchoRequest>,
        ) -> Result<Response<pb::EchoResponse>, Status> {
            // Authenticated like the real RPCs, so the ratio compares like with like.
            crate::auth::Caller::of(&request)?;
            Ok(Response::new(pb::EchoResponse {
                payload: request.into_inner().payload,
            }))
        }
    }
}
