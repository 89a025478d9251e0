//! The [`Store`](super::Store) methods whose SQL is the same text on every backend, written once.
//!
//! SQLite and PostgreSQL both take `$1`-style parameters, `ON CONFLICT … DO NOTHING`,
//! `RETURNING`, `CAST` and `coalesce`, and both planners find the right index for these
//! statements. [`impl_store!`] adds these methods to a backend's `impl Store`;
//! the backend provides the few inherent methods they need:
//!
//! - `reader(&self) -> &Pool<…>`: the pool reads go to;
//! - `begin(&self) -> Result<Tx>`: a durable write transaction, where `Tx` derefs to the
//!   connection and has `finish(self, Result<T>) -> Result<T>`;
//! - `statements(tx: &mut Tx) -> impl Statements`;
//! - `announce(&self)`: tells other processes that something became due, after a commit.

/// `impl Store for $backend { … }` with the shared methods added to the backend's own (see the
/// module documentation). The whole impl goes through the macro so that `async_trait` sees
/// every method.
macro_rules! impl_store {
    (impl Store for $backend:ty { $($own:tt)* }) => {
        #[async_trait::async_trait]
        impl $crate::store::Store for $backend {
        $($own)*

        async fn blueprint_insert(
            &self,
            new: $crate::store::NewBlueprint,
        ) -> $crate::store::Result<$crate::store::Blueprint> {
            use $crate::store::apply::Statements as _;
            use $crate::store::rows;
            let mut tx = self.begin().await?;
            let result = async {
                let now = $crate::store::Store::now(self) as i64;
                sqlx::query(
                    "INSERT INTO component (digest, wasm, created_at) VALUES ($1, $2, $3)
                     ON CONFLICT (digest) DO NOTHING",
                )
                .bind(&new.digest)
                .bind(&new.wasm)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                let row = sqlx::query(
                    "INSERT INTO blueprint (name, component, component_name, resource_type, config,
                                            grants, created_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)
                     ON CONFLICT (name) DO NOTHING RETURNING *",
                )
                .bind(&new.name)
                .bind(&new.digest)
                .bind(&new.component_name)
                .bind(&new.resource_type)
                .bind(&new.config)
                .bind(rows::json(&new.grants))
                .bind(now)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or_else(|| {
                    $crate::store::Error::Conflict(format!(
                        "a blueprint named {:?} already exists",
                        new.name
                    ))
                })?;
                let blueprint = rows::blueprint(&row)?;
                let message = format!(
                    "added {:?} with grants [{}]",
                    new.name,
                    $crate::store::common::grant_list(&new.grants)
                );
                Self::statements(&mut tx)
                    .insert_log(blueprint.id, "blueprint.added", &message, now)
                    .await?;
                Ok(blueprint)
            }
            .await;
            tx.finish(result).await
        }

        async fn blueprint_get(
            &self,
            id: $crate::store::ObjectId,
        ) -> $crate::store::Result<$crate::store::Blueprint> {
            let row = sqlx::query("SELECT * FROM blueprint WHERE id = $1")
                .bind(id.number())
                .fetch_optional(self.reader())
                .await?
                .ok_or_else(|| $crate::store::Error::NotFound(id.to_string()))?;
            $crate::store::rows::blueprint(&row)
        }

        async fn blueprint_by_name(
            &self,
            name: &str,
        ) -> $crate::store::Result<$crate::store::Blueprint> {
            let row = sqlx::query("SELECT * FROM blueprint WHERE name = $1")
                .bind(name)
                .fetch_optional(self.reader())
                .await?
                .ok_or_else(|| $crate::store::Error::NotFound(format!("blueprint {name:?}")))?;
            $crate::store::rows::blueprint(&row)
        }

        async fn blueprint_list(&self) -> $crate::store::Result<Vec<$crate::store::Blueprint>> {
            let rows = sqlx::query("SELECT * FROM blueprint ORDER BY id")
                .fetch_all(self.reader())
                .await?;
            $crate::store::rows::all(rows, $crate::store::rows::blueprint)
        }

        async fn blueprint_set_enabled(
            &self,
            id: $crate::store::ObjectId,
            enabled: bool,
        ) -> $crate::store::Result<$crate::store::Blueprint> {
            use $crate::store::apply::Statements as _;
            let mut tx = self.begin().await?;
            let result = async {
                let now = $crate::store::Store::now(self) as i64;
                let row = sqlx::query("UPDATE blueprint SET enabled = $1 WHERE id = $2 RETURNING *")
                    .bind(enabled)
                    .bind(id.number())
                    .fetch_optional(&mut *tx)
                    .await?
                    .ok_or_else(|| $crate::store::Error::NotFound(id.to_string()))?;
                let kind = if enabled {
                    "blueprint.enabled"
                } else {
                    "blueprint.disabled"
                };
                let message = kind.trim_start_matches("blueprint.");
                Self::statements(&mut tx)
                    .insert_log(id, kind, message, now)
                    .await?;
                $crate::store::rows::blueprint(&row)
            }
            .await;
            tx.finish(result).await
        }

        async fn blueprint_set_grants(
            &self,
            id: $crate::store::ObjectId,
            grants: &[$crate::grant::Grant],
            author: &str,
        ) -> $crate::store::Result<$crate::store::Blueprint> {
            use $crate::store::apply::Statements as _;
            use $crate::store::common::grant_list;
            use $crate::store::rows;
            let mut tx = self.begin().await?;
            let result = async {
                let now = $crate::store::Store::now(self) as i64;
                let before: String =
                    sqlx::query_scalar("SELECT grants FROM blueprint WHERE id = $1")
                        .bind(id.number())
                        .fetch_optional(&mut *tx)
                        .await?
                        .ok_or_else(|| $crate::store::Error::NotFound(id.to_string()))?;
                let before: Vec<$crate::grant::Grant> = rows::from_json(&before)?;
                let row = sqlx::query("UPDATE blueprint SET grants = $1 WHERE id = $2 RETURNING *")
                    .bind(rows::json(&grants))
                    .bind(id.number())
                    .fetch_one(&mut *tx)
                    .await?;
                let message = format!(
                    "grants changed by {author} from [{}] to [{}]",
                    grant_list(&before),
                    grant_list(grants)
                );
                Self::statements(&mut tx)
                    .insert_log(id, "blueprint.grants", &message, now)
                    .await?;
                rows::blueprint(&row)
            }
            .await;
            tx.finish(result).await
        }

        async fn component_get(&self, digest: &str) -> $crate::store::Result<Vec<u8>> {
            sqlx::query_scalar("SELECT wasm FROM component WHERE digest = $1")
                .bind(digest)
                .fetch_optional(self.reader())
                .await?
                .ok_or_else(|| $crate::store::Error::NotFound(format!("component {digest}")))
        }

        async fn resource_get(
            &self,
            id: $crate::store::ObjectId,
        ) -> $crate::store::Result<$crate::store::Resource> {
            let row = sqlx::query("SELECT * FROM resource WHERE id = $1")
                .bind(id.number())
                .fetch_optional(self.reader())
                .await?
                .ok_or_else(|| $crate::store::Error::NotFound(id.to_string()))?;
            $crate::store::rows::resource(&row)
        }

        async fn resource_list(
            &self,
            status: Option<$crate::domain::ResourceStatus>,
        ) -> $crate::store::Result<Vec<$crate::store::Resource>> {
            let rows = sqlx::query(
                "SELECT * FROM resource WHERE CAST($1 AS TEXT) IS NULL OR status = $1 ORDER BY id",
            )
            .bind(status.map($crate::domain::ResourceStatus::as_str))
            .fetch_all(self.reader())
            .await?;
            $crate::store::rows::all(rows, $crate::store::rows::resource)
        }

        async fn lease_get(
            &self,
            id: $crate::store::ObjectId,
        ) -> $crate::store::Result<$crate::store::Lease> {
            let row = sqlx::query("SELECT * FROM lease WHERE id = $1")
                .bind(id.number())
                .fetch_optional(self.reader())
                .await?
                .ok_or_else(|| $crate::store::Error::NotFound(id.to_string()))?;
            $crate::store::rows::lease(&row)
        }

        async fn lease_list(
            &self,
            status: Option<$crate::domain::LeaseStatus>,
        ) -> $crate::store::Result<Vec<$crate::store::Lease>> {
            let rows = sqlx::query(
                "SELECT * FROM lease WHERE CAST($1 AS TEXT) IS NULL OR status = $1 ORDER BY id",
            )
            .bind(status.map($crate::domain::LeaseStatus::as_str))
            .fetch_all(self.reader())
            .await?;
            $crate::store::rows::all(rows, $crate::store::rows::lease)
        }

        async fn lease_list_on_resource(
            &self,
            resource: $crate::store::ObjectId,
        ) -> $crate::store::Result<Vec<$crate::store::Lease>> {
            let rows = sqlx::query(
                "SELECT * FROM lease WHERE resource_id = $1 AND status != 'destroyed' ORDER BY id",
            )
            .bind(resource.number())
            .fetch_all(self.reader())
            .await?;
            $crate::store::rows::all(rows, $crate::store::rows::lease)
        }

        async fn lease_list_supporting(
            &self,
            resource: $crate::store::ObjectId,
        ) -> $crate::store::Result<Vec<$crate::store::Lease>> {
            let rows = sqlx::query("SELECT * FROM lease WHERE parent_resource_id = $1 ORDER BY id")
                .bind(resource.number())
                .fetch_all(self.reader())
                .await?;
            $crate::store::rows::all(rows, $crate::store::rows::lease)
        }

        async fn capacity_generation(&self, resource_type: &str) -> $crate::store::Result<i64> {
            Ok(sqlx::query_scalar(
                "SELECT coalesce((SELECT generation FROM capacity WHERE resource_type = $1), 0)",
            )
            .bind(resource_type)
            .fetch_one(self.reader())
            .await?)
        }

        async fn lease_insert(
            &self,
            new: &$crate::store::NewLease,
            count: usize,
        ) -> $crate::store::Result<Vec<$crate::store::Lease>> {
            use $crate::store::apply::Statements as _;
            use $crate::store::rows;
            let allowed: Vec<i64> = new.allowed_blueprints.iter().map(|b| b.number()).collect();
            let mut tx = self.begin().await?;
            let result = async {
                let now = $crate::store::Store::now(self) as i64;
                let mut leases = Vec::with_capacity(count);
                for _ in 0..count {
                    let row = sqlx::query(
                        "INSERT INTO lease (resource_type, status, attributes, allowed_blueprints,
                                            owner, until, created_at, updated_at)
                         VALUES ($1, 'pending', $2, $3, $4, $5, $6, $6) RETURNING *",
                    )
                    .bind(&new.resource_type)
                    .bind(rows::json(&new.attributes))
                    .bind(rows::json(&allowed))
                    .bind(&new.owner)
                    .bind(new.until.map(|t| t as i64))
                    .bind(now)
                    .fetch_one(&mut *tx)
                    .await?;
                    let lease = rows::lease(&row)?;
                    let mut st = Self::statements(&mut tx);
                    st.wake(lease.id, now).await?;
                    let message =
                        format!("requested by {} for a {}", new.owner, new.resource_type);
                    st.insert_log(lease.id, "lease.queued", &message, now)
                        .await?;
                    leases.push(lease);
                }
                Ok(leases)
            }
            .await;
            let leases = tx.finish(result).await?;
            self.announce();
            Ok(leases)
        }

        async fn command_post(
            &self,
            targets: &[$crate::store::ObjectId],
            kind: $crate::store::CommandKind,
            author: &str,
        ) -> $crate::store::Result<Vec<$crate::store::Command>> {
            let mut tx = self.begin().await?;
            let result = async {
                let now = $crate::store::Store::now(self) as i64;
                let mut st = Self::statements(&mut tx);
                $crate::store::apply::post_all(&mut st, targets, kind, author, now).await
            }
            .await;
            let commands = tx.finish(result).await?;
            self.announce();
            Ok(commands)
        }

        async fn log_list(
            &self,
            object: Option<$crate::store::ObjectId>,
            after_id: i64,
            limit: i64,
        ) -> $crate::store::Result<Vec<$crate::store::LogEntry>> {
            let query = match object {
                Some(object) => sqlx::query(
                    "SELECT * FROM log WHERE object = $1 AND id > $2 ORDER BY id LIMIT $3",
                )
                .bind(object.to_string())
                .bind(after_id)
                .bind(limit),
                None => sqlx::query("SELECT * FROM log WHERE id > $1 ORDER BY id LIMIT $2")
                    .bind(after_id)
                    .bind(limit),
            };
            let rows = query.fetch_all(self.reader()).await?;
            $crate::store::rows::all(rows, $crate::store::rows::log)
        }

        async fn slot_lock_list(
            &self,
            owner: Option<$crate::store::ObjectId>,
        ) -> $crate::store::Result<Vec<$crate::store::SlotLock>> {
            let query = match owner {
                Some(owner) => {
                    sqlx::query("SELECT * FROM slot_lock WHERE owner = $1 ORDER BY name")
                        .bind(owner.to_string())
                }
                None => sqlx::query("SELECT * FROM slot_lock ORDER BY name"),
            };
            let rows = query.fetch_all(self.reader()).await?;
            $crate::store::rows::all(rows, $crate::store::rows::slot_lock)
        }
        }
    };
}
pub(crate) use impl_store;

/// Grants as one line for log messages.
pub(crate) fn grant_list(grants: &[crate::grant::Grant]) -> String {
    grants
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
