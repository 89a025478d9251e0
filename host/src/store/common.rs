//! The [`Store`](super::Store) methods, and the plan [`Statements`](super::apply::Statements),
//! whose SQL is the same text on every backend, written once.
//!
//! SQLite and PostgreSQL both take `$1`-style parameters, `ON CONFLICT … DO NOTHING`,
//! `RETURNING`, `CAST` and `coalesce`, and both planners find the right index for these
//! statements. [`impl_statements!`] adds the shared statements to a backend's `impl Statements`
//! (the few whose SQL differs stay with the backend), and [`impl_store!`] adds these methods to
//! a backend's `impl Store`;
//! the backend provides the few inherent methods they need:
//!
//! - `reader(&self)`: where reads run (a pool of connections);
//! - `page_rows(&self, sql, binds)`: the rows of one page of a list ([`page_sql`]), whose SQL
//!   is made at run time;
//! - `begin(&self) -> Result<Tx>`: a durable write transaction, where `Tx` derefs to the
//!   connection and has `finish(self, Result<T>) -> Result<T>`;
//! - `statements(tx: &mut Tx) -> impl Statements`;
//! - `announce(&self)`: tells other processes that something became due, after a commit.
//!
//! Statements are built with the modules the backend names (`write_query` for a write
//! transaction's, `read_query` for reads, `query` for the plan statements): `sqlx` on
//! PostgreSQL, `direct` on SQLite, which runs every statement through rusqlite on the task's
//! own thread (`store::sqlite::direct`); both offer `query`, `query_scalar` and `query_as` with
//! sqlx's shape.

/// `write_query = module; read_query = module; impl Store for $backend { … }` with the shared
/// methods added to the backend's own (see the module documentation): the modules build the
/// statements run on a write transaction and on the backend's readers. The whole impl goes
/// through the macro so that `async_trait` sees every method.
macro_rules! impl_store {
    (write_query = $w:ident; read_query = $r:ident; impl Store for $backend:ty { $($own:tt)* }) => {
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
                $w::query(
                    "INSERT INTO component (digest, wasm, created_at) VALUES ($1, $2, $3)
                     ON CONFLICT (digest) DO NOTHING",
                )
                .bind(&new.digest)
                .bind(&new.wasm)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                let row = $w::query(
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
            let row = $r::query("SELECT * FROM blueprint WHERE id = $1")
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
            let row = $r::query("SELECT * FROM blueprint WHERE name = $1")
                .bind(name)
                .fetch_optional(self.reader())
                .await?
                .ok_or_else(|| $crate::store::Error::NotFound(format!("blueprint {name:?}")))?;
            $crate::store::rows::blueprint(&row)
        }

        async fn blueprint_list(&self) -> $crate::store::Result<Vec<$crate::store::Blueprint>> {
            let rows = $r::query("SELECT * FROM blueprint ORDER BY id")
                .fetch_all(self.reader())
                .await?;
            $crate::store::rows::all(rows, $crate::store::rows::blueprint)
        }

        async fn blueprint_switch(
            &self,
            id: $crate::store::ObjectId,
            switch: $crate::store::BlueprintSwitch,
        ) -> $crate::store::Result<$crate::store::Blueprint> {
            use $crate::store::apply::Statements as _;
            let mut tx = self.begin().await?;
            let result = async {
                let now = $crate::store::Store::now(self) as i64;
                let before = Self::statements(&mut tx)
                    .lock_blueprint(id)
                    .await?
                    .ok_or_else(|| $crate::store::Error::NotFound(id.to_string()))?;
                let clears = switch.clears_back_off();
                let row = $w::query(
                    "UPDATE blueprint SET enabled = COALESCE($1, enabled),
                            failures = CASE WHEN $2 THEN 0 ELSE failures END,
                            retry_at = CASE WHEN $2 THEN NULL ELSE retry_at END,
                            last_failure = CASE WHEN $2 THEN NULL ELSE last_failure END
                      WHERE id = $3 RETURNING *",
                )
                .bind(switch.enabled())
                .bind(clears)
                .bind(id.number())
                .fetch_one(&mut *tx)
                .await?;
                let mut st = Self::statements(&mut tx);
                st.insert_log(id, switch.log_kind(), &switch.message(&before), now)
                    .await?;
                if clears {
                    // Leases waiting while it backed off may be served at once.
                    $crate::store::apply::capacity_changed(&mut st, &before.resource_type).await?;
                }
                $crate::store::rows::blueprint(&row)
            }
            .await;
            let switched = tx.finish(result).await?;
            self.announce();
            Ok(switched)
        }

        async fn blueprint_change_grants(
            &self,
            id: $crate::store::ObjectId,
            change: &$crate::grant::GrantChange,
            author: &str,
        ) -> $crate::store::Result<$crate::store::Blueprint> {
            use $crate::store::apply::Statements as _;
            use $crate::store::common::grant_list;
            use $crate::store::rows;
            let mut tx = self.begin().await?;
            let result = async {
                let now = $crate::store::Store::now(self) as i64;
                let before = Self::statements(&mut tx)
                    .lock_blueprint(id)
                    .await?
                    .ok_or_else(|| $crate::store::Error::NotFound(id.to_string()))?;
                let grants = change.apply(&before.grants).map_err(|missing| {
                    $crate::store::Error::Precondition(format!(
                        "{} has no grant {missing} to revoke",
                        before.name
                    ))
                })?;
                let row = $w::query("UPDATE blueprint SET grants = $1 WHERE id = $2 RETURNING *")
                    .bind(rows::json(&grants))
                    .bind(id.number())
                    .fetch_one(&mut *tx)
                    .await?;
                let message = format!(
                    "grants changed by {author} from [{}] to [{}]",
                    grant_list(&before.grants),
                    grant_list(&grants)
                );
                Self::statements(&mut tx)
                    .insert_log(id, "blueprint.grants", &message, now)
                    .await?;
                rows::blueprint(&row)
            }
            .await;
            tx.finish(result).await
        }

        async fn blueprint_change_limits(
            &self,
            id: $crate::store::ObjectId,
            changes: &[$crate::limits::Change],
            author: &str,
        ) -> $crate::store::Result<$crate::store::Blueprint> {
            use $crate::store::apply::Statements as _;
            use $crate::store::rows;
            let mut tx = self.begin().await?;
            let result = async {
                let now = $crate::store::Store::now(self) as i64;
                let before = Self::statements(&mut tx)
                    .lock_blueprint(id)
                    .await?
                    .ok_or_else(|| $crate::store::Error::NotFound(id.to_string()))?;
                let mut limits = before.limits.clone();
                limits.apply(changes);
                let row = $w::query(
                    "UPDATE blueprint SET limits = $1, resource_tat = 0 WHERE id = $2 RETURNING *",
                )
                .bind(rows::json(&limits))
                    .bind(id.number())
                    .fetch_one(&mut *tx)
                    .await?;
                let shown = |limits: &$crate::limits::Limits| match limits.overrides() {
                    set if set.is_empty() => "the defaults".to_string(),
                    set => format!("[{}]", set.join(", ")),
                };
                let message = format!(
                    "limits changed by {author} from {} to {}",
                    shown(&before.limits),
                    shown(&limits)
                );
                let mut st = Self::statements(&mut tx);
                st.insert_log(id, "blueprint.limits", &message, now).await?;
                // Leases waiting on a limit that was raised may be served at once.
                $crate::store::apply::capacity_changed(&mut st, &before.resource_type).await?;
                rows::blueprint(&row)
            }
            .await;
            let changed = tx.finish(result).await?;
            self.announce();
            Ok(changed)
        }

        async fn blueprint_add_kept(
            &self,
            kept: &[($crate::store::ObjectId, $crate::store::Kept)],
        ) -> $crate::store::Result<()> {
            let mut tx = self.begin().await?;
            let result = async {
                for (blueprint, kept) in kept {
                    $w::query(
                        "UPDATE blueprint SET log_bytes = log_bytes + $1,
                                step_bytes = step_bytes + $2
                          WHERE id = $3",
                    )
                    .bind(kept.log)
                    .bind(kept.steps)
                    .bind(blueprint.number())
                    .execute(&mut *tx)
                    .await?;
                }
                Ok(())
            }
            .await;
            tx.finish(result).await
        }

        async fn blueprint_update(
            &self,
            id: $crate::store::ObjectId,
            update: $crate::store::BlueprintUpdate,
            author: &str,
        ) -> $crate::store::Result<$crate::store::Blueprint> {
            use $crate::store::apply::Statements as _;
            use $crate::store::rows;
            let mut tx = self.begin().await?;
            let result = async {
                let now = $crate::store::Store::now(self) as i64;
                let before = Self::statements(&mut tx)
                    .lock_blueprint(id)
                    .await?
                    .ok_or_else(|| $crate::store::Error::NotFound(id.to_string()))?;
                if before.version != update.from_version {
                    return Err($crate::store::Error::Superseded {
                        blueprint: id,
                        from: update.from_version,
                        current: before.version,
                    });
                }
                if let Some(wasm) = &update.wasm {
                    $w::query(
                        "INSERT INTO component (digest, wasm, created_at) VALUES ($1, $2, $3)
                         ON CONFLICT (digest) DO NOTHING",
                    )
                    .bind(&update.digest)
                    .bind(wasm)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                }
                let row = $w::query(
                    "UPDATE blueprint SET component = $1, component_name = $2, config = $3,
                                          version = version + 1,
                                          failures = 0, retry_at = NULL, last_failure = NULL
                      WHERE id = $4 RETURNING *",
                )
                .bind(&update.digest)
                .bind(&update.component_name)
                .bind(&update.config)
                .bind(id.number())
                .fetch_one(&mut *tx)
                .await?;
                let message = $crate::store::common::update_message(&before, &update, author);
                let mut st = Self::statements(&mut tx);
                st.insert_log(id, "blueprint.updated", &message, now).await?;
                // The new component or config may serve leases that were waiting.
                $crate::store::apply::capacity_changed(&mut st, &before.resource_type).await?;
                rows::blueprint(&row)
            }
            .await;
            let updated = tx.finish(result).await?;
            self.announce();
            Ok(updated)
        }

        async fn component_get(&self, digest: &str) -> $crate::store::Result<Vec<u8>> {
            $r::query_scalar("SELECT wasm FROM component WHERE digest = $1")
                .bind(digest)
                .fetch_optional(self.reader())
                .await?
                .ok_or_else(|| $crate::store::Error::NotFound(format!("component {digest}")))
        }

        async fn installation_secret(&self) -> $crate::store::Result<[u8; 32]> {
            use $crate::store::common::{SEED_SECRET_KEY, secret_bytes};
            let stored: Option<Vec<u8>> =
                $r::query_scalar("SELECT value FROM installation WHERE key = $1")
                    .bind(SEED_SECRET_KEY)
                    .fetch_optional(self.reader())
                    .await?;
            if let Some(stored) = stored {
                return secret_bytes(&stored);
            }
            let fresh: [u8; 32] = rand::random();
            let mut tx = self.begin().await?;
            let result = async {
                $w::query(
                    "INSERT INTO installation (key, value) VALUES ($1, $2)
                     ON CONFLICT (key) DO NOTHING",
                )
                .bind(SEED_SECRET_KEY)
                .bind(&fresh[..])
                .execute(&mut *tx)
                .await?;
                let stored: Vec<u8> =
                    $w::query_scalar("SELECT value FROM installation WHERE key = $1")
                        .bind(SEED_SECRET_KEY)
                        .fetch_one(&mut *tx)
                        .await?;
                secret_bytes(&stored)
            }
            .await;
            tx.finish(result).await
        }

        async fn resource_setup(
            &self,
            blueprint: $crate::store::ObjectId,
            tenant: &str,
        ) -> $crate::store::Result<$crate::limits::Setup> {
            let (setting_up, mine, tat): (i64, i64, Option<i64>) = $r::query_as(
                "SELECT count(*), count(*) FILTER (WHERE made_for = $2),
                        (SELECT resource_tat FROM blueprint WHERE id = $1)
                   FROM resource WHERE blueprint_id = $1 AND status = 'pending'",
            )
            .bind(blueprint.number())
            .bind(tenant)
            .fetch_one(self.reader())
            .await?;
            Ok($crate::limits::Setup {
                setting_up: setting_up as u64,
                mine: mine as u64,
                tat: tat.ok_or_else(|| $crate::store::Error::NotFound(blueprint.to_string()))?,
            })
        }

        async fn resource_get(
            &self,
            id: $crate::store::ObjectId,
        ) -> $crate::store::Result<$crate::store::Resource> {
            let row = $r::query("SELECT * FROM resource WHERE id = $1")
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
            let rows = $r::query(
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
            let row = $r::query("SELECT * FROM lease WHERE id = $1")
                .bind(id.number())
                .fetch_optional(self.reader())
                .await?
                .ok_or_else(|| $crate::store::Error::NotFound(id.to_string()))?;
            $crate::store::rows::lease(&row)
        }

        async fn lease_with_commands(
            &self,
            id: $crate::store::ObjectId,
        ) -> $crate::store::Result<($crate::store::Lease, Vec<$crate::store::Command>)> {
            use $crate::store::rows::{self, Columns as _};
            // One row per pending command (or one without a command), in one round trip.
            let rows = $r::query(
                "SELECT lease.*, command.id AS command_id, command.target AS command_target,
                        command.kind AS command_kind, command.author AS command_author,
                        command.created_at AS command_created_at,
                        command.consumed_at AS command_consumed_at,
                        command.outcome AS command_outcome
                   FROM lease LEFT JOIN command
                     ON command.target = $2 AND command.consumed_at IS NULL
                  WHERE lease.id = $1 ORDER BY command.id",
            )
            .bind(id.number())
            .bind(id.to_string())
            .fetch_all(self.reader())
            .await?;
            let first = rows
                .first()
                .ok_or_else(|| $crate::store::Error::NotFound(id.to_string()))?;
            let lease = rows::lease(first)?;
            let mut commands = Vec::new();
            for row in &rows {
                if row.opt_int("command_id")?.is_some() {
                    commands.push(rows::command(&rows::Prefixed(row, "command_"))?);
                }
            }
            Ok((lease, commands))
        }

        async fn lease_list(
            &self,
            status: Option<$crate::domain::LeaseStatus>,
        ) -> $crate::store::Result<Vec<$crate::store::Lease>> {
            let rows = $r::query(
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
            let rows = $r::query(
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
            let rows = $r::query("SELECT * FROM lease WHERE parent_resource_id = $1 ORDER BY id")
                .bind(resource.number())
                .fetch_all(self.reader())
                .await?;
            $crate::store::rows::all(rows, $crate::store::rows::lease)
        }

        async fn capacity_generation(&self, resource_type: &str) -> $crate::store::Result<i64> {
            Ok($r::query_scalar(
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
                if let Some((most, blueprint)) = &new.waiting_limit {
                    let waiting: i64 = $w::query_scalar(
                        "SELECT count(*) FROM lease
                          WHERE owner = $1 AND resource_type = $2
                            AND status IN ('pending', 'acquired')",
                    )
                    .bind(&new.owner)
                    .bind(&new.resource_type)
                    .fetch_one(&mut *tx)
                    .await?;
                    if waiting as u64 + count as u64 > *most {
                        let reason = format!(
                            "{} has {waiting} {:?} leases waiting to become active; {count} more \
                             would pass {blueprint}'s limit of {most} per owner \
                             (pending-per-owner): wait for some to become active, or release \
                             some",
                            new.owner, new.resource_type
                        );
                        let limit = $crate::limits::Limit::PendingPerOwner;
                        return Err($crate::store::apply::limited(blueprint, limit, reason, None));
                    }
                }
                let tenant = $crate::scheduler::owner_tenant(&new.owner);
                let mut leases = Vec::with_capacity(count);
                for _ in 0..count {
                    let row = $w::query(
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
                    st.enqueue(lease.id, &tenant, now).await?;
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
                Some(object) => $r::query(
                    "SELECT * FROM log WHERE object = $1 AND id > $2 ORDER BY id LIMIT $3",
                )
                .bind(object.to_string())
                .bind(after_id)
                .bind(limit),
                None => $r::query("SELECT * FROM log WHERE id > $1 ORDER BY id LIMIT $2")
                    .bind(after_id)
                    .bind(limit),
            };
            let rows = query.fetch_all(self.reader()).await?;
            $crate::store::rows::all(rows, $crate::store::rows::log)
        }

        async fn lease_page(
            &self,
            query: &$crate::store::ListQuery,
        ) -> $crate::store::Result<$crate::store::Page<$crate::store::Lease>> {
            $crate::store::common::fetch_page!(self, "lease", query, $crate::store::rows::lease)
        }

        async fn resource_page(
            &self,
            query: &$crate::store::ListQuery,
        ) -> $crate::store::Result<$crate::store::Page<$crate::store::Resource>> {
            $crate::store::common::fetch_page!(self, "resource", query, $crate::store::rows::resource)
        }

        async fn counts(&self) -> $crate::store::Result<$crate::store::Counts> {
            let now = $crate::store::Store::now(self) as i64;
            let (hour, day) = (now - 3_600_000, now - 86_400_000);
            // In the order of the (status, resource_type) index, which they scan.
            let leases = $r::query_as(
                "SELECT resource_type, status, count(*) FROM lease GROUP BY status, resource_type",
            )
            .fetch_all(self.reader())
            .await?;
            let resources = $r::query_as(
                "SELECT resource_type, status, count(*) FROM resource GROUP BY status, resource_type",
            )
            .fetch_all(self.reader())
            .await?;
            let leases_failed = $r::query_as(
                "SELECT (SELECT count(*) FROM lease WHERE end_kind = 'broken' AND ended_at >= $1),
                        (SELECT count(*) FROM lease WHERE end_kind = 'broken' AND ended_at >= $2)",
            )
            .bind(hour)
            .bind(day)
            .fetch_one(self.reader())
            .await?;
            let resources_failed = $r::query_as(
                "SELECT (SELECT count(*) FROM resource WHERE end_kind = 'broken' AND ended_at >= $1),
                        (SELECT count(*) FROM resource WHERE end_kind = 'broken' AND ended_at >= $2)",
            )
            .bind(hour)
            .bind(day)
            .fetch_one(self.reader())
            .await?;
            let (due, oldest_due): (i64, Option<i64>) = $r::query_as(
                "SELECT count(*), min(wake_at) FROM work_item
                  WHERE owner IS NULL AND wake_at IS NOT NULL AND wake_at <= $1",
            )
            .bind(now)
            .fetch_one(self.reader())
            .await?;
            let claimed = $r::query_scalar("SELECT count(*) FROM work_item WHERE owner IS NOT NULL")
                .fetch_one(self.reader())
                .await?;
            let kept = $r::query_as("SELECT name, log_bytes, step_bytes FROM blueprint ORDER BY id")
                .fetch_all(self.reader())
                .await?;
            Ok($crate::store::Counts {
                leases,
                resources,
                leases_failed,
                resources_failed,
                due,
                claimed,
                oldest_due: oldest_due.map(|t| t as $crate::domain::Timestamp),
                kept,
            })
        }

        async fn log_recent(
            &self,
            limit: i64,
        ) -> $crate::store::Result<Vec<$crate::store::LogEntry>> {
            let rows = $r::query(
                "SELECT * FROM (SELECT * FROM log ORDER BY id DESC LIMIT $1) AS recent ORDER BY id",
            )
            .bind(limit)
            .fetch_all(self.reader())
            .await?;
            $crate::store::rows::all(rows, $crate::store::rows::log)
        }

        async fn step_list(
            &self,
            object: $crate::store::ObjectId,
            after_id: i64,
            limit: i64,
        ) -> $crate::store::Result<Vec<$crate::store::StepRecord>> {
            let rows = $r::query(
                "SELECT * FROM step WHERE object = $1 AND id > $2 ORDER BY id LIMIT $3",
            )
            .bind(object.to_string())
            .bind(after_id)
            .bind(limit)
            .fetch_all(self.reader())
            .await?;
            $crate::store::rows::all(rows, $crate::store::rows::step)
        }

        async fn slot_lock_list(
            &self,
            owner: Option<$crate::store::ObjectId>,
        ) -> $crate::store::Result<Vec<$crate::store::SlotLock>> {
            let query = match owner {
                Some(owner) => {
                    $r::query("SELECT * FROM slot_lock WHERE owner = $1 ORDER BY name")
                        .bind(owner.to_string())
                }
                None => $r::query("SELECT * FROM slot_lock ORDER BY name"),
            };
            let rows = query.fetch_all(self.reader()).await?;
            $crate::store::rows::all(rows, $crate::store::rows::slot_lock)
        }
        }
    };
}
pub(crate) use impl_store;

/// `impl Statements for $backend { … }` with the plan statements whose SQL is the same on every
/// backend added to the backend's own. A backend's statements type wraps its connection
/// (`self.0`); `for_share` and `for_update` are the row-lock clauses a read inside a write
/// transaction takes (empty on SQLite, whose write transactions are serialised); `query` is the
/// module the statements are built with.
macro_rules! impl_statements {
    (
        for_share = $for_share:literal, for_update = $for_update:literal, query = $q:ident;
        impl Statements for $backend:ty { $($own:tt)* }
    ) => {
        #[async_trait::async_trait]
        impl $crate::store::apply::Statements for $backend {
        $($own)*

        async fn insert_charged_log(
            &mut self,
            object: $crate::store::ObjectId,
            kind: &str,
            message: &str,
            charged: Option<$crate::store::ObjectId>,
            now: i64,
        ) -> $crate::store::Result<()> {
            $q::query(
                "INSERT INTO log (object, kind, message, charged, created_at)
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(object.to_string())
            .bind(kind)
            .bind(message)
            .bind(charged.map(|b| b.number()))
            .bind(now)
            .execute(&mut *self.0)
            .await?;
            Ok(())
        }

        async fn last_log(
            &mut self,
            object: $crate::store::ObjectId,
        ) -> $crate::store::Result<Option<(String, String)>> {
            Ok($q::query_as(
                "SELECT kind, message FROM log WHERE object = $1 ORDER BY id DESC LIMIT 1",
            )
            .bind(object.to_string())
            .fetch_optional(&mut *self.0)
            .await?)
        }

        async fn enqueue(
            &mut self,
            object: $crate::store::ObjectId,
            tenant: &str,
            at: i64,
        ) -> $crate::store::Result<()> {
            $q::query("INSERT INTO work_item (object, tenant) VALUES ($1, $2)")
                .bind(object.to_string())
                .bind(tenant)
                .execute(&mut *self.0)
                .await?;
            self.wake(object, at).await
        }

        async fn resources_setting_up(
            &mut self,
            blueprint: $crate::store::ObjectId,
            tenant: &str,
        ) -> $crate::store::Result<(i64, i64)> {
            Ok($q::query_as(
                "SELECT count(*), count(*) FILTER (WHERE made_for = $2) FROM resource
                  WHERE blueprint_id = $1 AND status = 'pending'",
            )
            .bind(blueprint.number())
            .bind(tenant)
            .fetch_one(&mut *self.0)
            .await?)
        }

        async fn supporting_waiting(
            &mut self,
            requester: $crate::store::ObjectId,
        ) -> $crate::store::Result<i64> {
            Ok($q::query_scalar(
                "SELECT count(*) FROM lease WHERE requester = $1 AND status = 'pending'",
            )
            .bind(requester.number())
            .fetch_one(&mut *self.0)
            .await?)
        }

        async fn lock_resource_bucket(
            &mut self,
            blueprint: $crate::store::ObjectId,
        ) -> $crate::store::Result<Option<(String, i64)>> {
            Ok($q::query_as(concat!(
                "SELECT name, resource_tat FROM blueprint WHERE id = $1",
                $for_update
            ))
            .bind(blueprint.number())
            .fetch_optional(&mut *self.0)
            .await?)
        }

        async fn set_resource_bucket(
            &mut self,
            blueprint: $crate::store::ObjectId,
            tat: i64,
        ) -> $crate::store::Result<()> {
            $q::query("UPDATE blueprint SET resource_tat = $1 WHERE id = $2")
                .bind(tat)
                .bind(blueprint.number())
                .execute(&mut *self.0)
                .await?;
            Ok(())
        }

        async fn insert_command(
            &mut self,
            target: $crate::store::ObjectId,
            kind: $crate::store::CommandKind,
            author: &str,
            now: i64,
        ) -> $crate::store::Result<$crate::store::Command> {
            let row = $q::query(
                "INSERT INTO command (target, kind, author, created_at) VALUES ($1, $2, $3, $4)
                 RETURNING *",
            )
            .bind(target.to_string())
            .bind(kind.as_str())
            .bind(author)
            .bind(now)
            .fetch_one(&mut *self.0)
            .await?;
            $crate::store::rows::command(&row)
        }

        async fn consume(&mut self, id: i64, outcome: &str, now: i64) -> $crate::store::Result<Option<String>> {
            Ok($q::query_scalar(
                "UPDATE command SET consumed_at = $1, outcome = $2
                 WHERE id = $3 AND consumed_at IS NULL RETURNING kind",
            )
            .bind(now)
            .bind(outcome)
            .bind(id)
            .fetch_optional(&mut *self.0)
            .await?)
        }

        async fn reacquire(&mut self, lease: $crate::store::ObjectId, now: i64) -> $crate::store::Result<()> {
            $q::query(
                "UPDATE lease SET status = 'pending', resource_id = NULL, acquiring = NULL,
                     exec_results = '[]', updated_at = $1 WHERE id = $2",
            )
            .bind(now)
            .bind(lease.number())
            .execute(&mut *self.0)
            .await?;
            Ok(())
        }

        async fn set_acquiring(&mut self, lease: $crate::store::ObjectId, resource: Option<$crate::store::ObjectId>) -> $crate::store::Result<()> {
            $q::query(
                "UPDATE lease SET exec_results = CASE WHEN acquiring IS NOT DISTINCT FROM $1
                                                      THEN exec_results ELSE '[]' END,
                     acquiring = $1 WHERE id = $2",
            )
            .bind(resource.map($crate::store::ObjectId::number))
            .bind(lease.number())
            .execute(&mut *self.0)
            .await?;
            Ok(())
        }

        async fn attributes(&mut self, object: $crate::store::ObjectId) -> $crate::store::Result<Option<String>> {
            let select = $crate::store::common::by_table(
                object,
                concat!("SELECT attributes FROM resource WHERE id = $1", $for_update),
                concat!("SELECT attributes FROM lease WHERE id = $1", $for_update),
            )?;
            Ok($q::query_scalar(select)
                .bind(object.number())
                .fetch_optional(&mut *self.0)
                .await?)
        }

        async fn set_attributes(&mut self, object: $crate::store::ObjectId, json: &str, now: i64) -> $crate::store::Result<()> {
            let update = $crate::store::common::by_table(
                object,
                "UPDATE resource SET attributes = $1, updated_at = $2 WHERE id = $3",
                "UPDATE lease SET attributes = $1, updated_at = $2 WHERE id = $3",
            )?;
            $q::query(update)
                .bind(json)
                .bind(now)
                .bind(object.number())
                .execute(&mut *self.0)
                .await?;
            Ok(())
        }

        async fn set_until(&mut self, object: $crate::store::ObjectId, until: Option<i64>, now: i64) -> $crate::store::Result<()> {
            let update = $crate::store::common::by_table(
                object,
                "UPDATE resource SET until = $1, updated_at = $2 WHERE id = $3",
                "UPDATE lease SET until = $1, updated_at = $2 WHERE id = $3",
            )?;
            $q::query(update)
                .bind(until)
                .bind(now)
                .bind(object.number())
                .execute(&mut *self.0)
                .await?;
            Ok(())
        }

        async fn set_exec_results(&mut self, object: $crate::store::ObjectId, json: &str) -> $crate::store::Result<()> {
            let update = $crate::store::common::by_table(
                object,
                "UPDATE resource SET exec_results = $1 WHERE id = $2",
                "UPDATE lease SET exec_results = $1 WHERE id = $2",
            )?;
            $q::query(update)
                .bind(json)
                .bind(object.number())
                .execute(&mut *self.0)
                .await?;
            Ok(())
        }

        async fn free_locks(&mut self, owner: $crate::store::ObjectId) -> $crate::store::Result<()> {
            $q::query("DELETE FROM slot_lock WHERE owner = $1")
                .bind(owner.to_string())
                .execute(&mut *self.0)
                .await?;
            Ok(())
        }

        async fn insert_supporting_lease(
            &mut self,
            parent: $crate::store::ObjectId,
            requester: $crate::store::ObjectId,
            key: &str,
            resource_type: &str,
            attributes: &str,
            now: i64,
        ) -> $crate::store::Result<Option<i64>> {
            let id: Option<i64> = $q::query_scalar(
                "INSERT INTO lease (resource_type, status, attributes, owner, parent_resource_id,
                                    parent_key, requester, depth, created_at, updated_at)
                 SELECT $1, 'pending', $2, $3, $4, $5, $6, depth + 1, $7, $7
                   FROM resource WHERE id = $4
                 RETURNING id",
            )
            .bind(resource_type)
            .bind(attributes)
            .bind(parent.to_string())
            .bind(parent.number())
            .bind(key)
            .bind(requester.number())
            .bind(now)
            .fetch_optional(&mut *self.0)
            .await?;
            if id.is_some() {
                $q::query("UPDATE resource SET supporting = supporting + 1 WHERE id = $1")
                    .bind(parent.number())
                    .execute(&mut *self.0)
                    .await?;
            }
            Ok(id)
        }

        async fn failures(&mut self, blueprint: $crate::store::ObjectId) -> $crate::store::Result<Option<i64>> {
            Ok(
                $q::query_scalar(concat!("SELECT failures FROM blueprint WHERE id = $1", $for_update))
                    .bind(blueprint.number())
                    .fetch_optional(&mut *self.0)
                    .await?,
            )
        }

        async fn lock_blueprint(
            &mut self,
            blueprint: $crate::store::ObjectId,
        ) -> $crate::store::Result<Option<$crate::store::Blueprint>> {
            $q::query(concat!("SELECT * FROM blueprint WHERE id = $1", $for_update))
                .bind(blueprint.number())
                .fetch_optional(&mut *self.0)
                .await?
                .map(|row| $crate::store::rows::blueprint(&row))
                .transpose()
        }

        async fn add_failure(
            &mut self,
            blueprint: $crate::store::ObjectId,
            reason: &str,
            retry_at: i64,
        ) -> $crate::store::Result<i64> {
            Ok($q::query_scalar(
                "UPDATE blueprint SET failures = failures + 1, retry_at = $1, last_failure = $2
                  WHERE id = $3 RETURNING failures",
            )
            .bind(retry_at)
            .bind(reason)
            .bind(blueprint.number())
            .fetch_one(&mut *self.0)
            .await?)
        }

        async fn set_end(
            &mut self,
            object: $crate::store::ObjectId,
            kind: &str,
            detail: Option<&str>,
            now: i64,
        ) -> $crate::store::Result<()> {
            let update = $crate::store::common::by_table(
                object,
                "UPDATE resource SET end_kind = $1, end_detail = $2, ended_at = $3
                 WHERE id = $4 AND end_kind IS NULL",
                "UPDATE lease SET end_kind = $1, end_detail = $2, ended_at = $3
                 WHERE id = $4 AND end_kind IS NULL",
            )?;
            $q::query(update)
                .bind(kind)
                .bind(detail)
                .bind(now)
                .bind(object.number())
                .execute(&mut *self.0)
                .await?;
            Ok(())
        }

        async fn insert_step(
            &mut self,
            step: &$crate::store::StepRecord,
            now: i64,
        ) -> $crate::store::Result<()> {
            $q::query(
                "INSERT INTO step (object, blueprint_id, hook, step, verdict, duration_us, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(step.object.to_string())
            .bind(step.blueprint.number())
            .bind(&step.hook)
            .bind(step.step.as_deref())
            .bind(&step.verdict)
            .bind(step.duration_us)
            .bind(now)
            .execute(&mut *self.0)
            .await?;
            Ok(())
        }

        async fn clear_failures(&mut self, blueprint: $crate::store::ObjectId) -> $crate::store::Result<()> {
            $q::query(
                "UPDATE blueprint SET failures = 0, retry_at = NULL, last_failure = NULL WHERE id = $1",
            )
            .bind(blueprint.number())
            .execute(&mut *self.0)
            .await?;
            Ok(())
        }

        async fn set_status(&mut self, object: $crate::store::ObjectId, status: &str, now: i64) -> $crate::store::Result<()> {
            let update = $crate::store::common::by_table(
                object,
                "UPDATE resource SET status = $1, updated_at = $2 WHERE id = $3",
                "UPDATE lease SET status = $1, waiting = FALSE, updated_at = $2 WHERE id = $3",
            )?;
            $q::query(update)
                .bind(status)
                .bind(now)
                .bind(object.number())
                .execute(&mut *self.0)
                .await?;
            Ok(())
        }

        async fn acquire(&mut self, lease: $crate::store::ObjectId, resource: $crate::store::ObjectId, now: i64) -> $crate::store::Result<()> {
            $q::query(
                "UPDATE lease SET status = 'acquired', resource_id = $1, acquiring = NULL,
                     waiting = FALSE, updated_at = $2 WHERE id = $3",
            )
            .bind(resource.number())
            .bind(now)
            .bind(lease.number())
            .execute(&mut *self.0)
            .await?;
            Ok(())
        }

        async fn mark_waiting(&mut self, lease: $crate::store::ObjectId) -> $crate::store::Result<()> {
            $q::query("UPDATE lease SET waiting = TRUE WHERE id = $1")
                .bind(lease.number())
                .execute(&mut *self.0)
                .await?;
            Ok(())
        }

        async fn take_lock(&mut self, name: &str, owner: $crate::store::ObjectId, now: i64) -> $crate::store::Result<String> {
            Ok($q::query_scalar(
                "INSERT INTO slot_lock (name, owner, created_at) VALUES ($1, $2, $3)
                 ON CONFLICT (name) DO UPDATE SET name = slot_lock.name
                 RETURNING owner",
            )
            .bind(name)
            .bind(owner.to_string())
            .bind(now)
            .fetch_one(&mut *self.0)
            .await?)
        }

        async fn bump_capacity(&mut self, resource_type: &str) -> $crate::store::Result<()> {
            $q::query(
                "INSERT INTO capacity (resource_type, generation) VALUES ($1, 1)
                 ON CONFLICT (resource_type) DO UPDATE SET generation = capacity.generation + 1",
            )
            .bind(resource_type)
            .execute(&mut *self.0)
            .await?;
            Ok(())
        }

        async fn status_of(&mut self, object: $crate::store::ObjectId) -> $crate::store::Result<Option<(String, Option<i64>)>> {
            let query = $crate::store::common::by_table(
                object,
                concat!("SELECT status, CAST(NULL AS BIGINT) FROM resource WHERE id = $1", $for_share),
                concat!("SELECT status, parent_resource_id FROM lease WHERE id = $1", $for_share),
            )?;
            Ok($q::query_as(query)
                .bind(object.number())
                .fetch_optional(&mut *self.0)
                .await?)
        }

        async fn insert_resource(
            &mut self,
            new: &$crate::store::apply::NewResource<'_>,
            now: i64,
        ) -> $crate::store::Result<i64> {
            Ok($q::query_scalar(
                "INSERT INTO resource (blueprint_id, resource_type, status, depth, made_for,
                                       made_for_lease, created_at, updated_at)
                 VALUES ($1, $2, 'pending', $3, $4, $5, $6, $6) RETURNING id",
            )
            .bind(new.blueprint.number())
            .bind(new.resource_type)
            .bind(i64::from(new.depth))
            .bind(new.made_for)
            .bind(new.made_for_lease.map($crate::store::ObjectId::number))
            .bind(now)
            .fetch_one(&mut *self.0)
            .await?)
        }
        }
    };
}
pub(crate) use impl_statements;

/// One page of `$table` under `$query` read from `$store`'s reader, rows converted by
/// `$convert` (used inside [`impl_store!`], where the backend's types are known).
macro_rules! fetch_page {
    ($store:expr, $table:literal, $query:expr, $convert:path) => {{
        let (sql, binds) = $crate::store::common::page_sql($table, $query);
        let rows = $store.page_rows(sql, binds).await?;
        let items = $crate::store::rows::all(rows, $convert)?;
        Ok($crate::store::common::paged(items, $query.limit, |item| {
            item.id.number()
        }))
    }};
}
pub(crate) use fetch_page;

/// The `installation` row holding the secret mixed into blueprint calls' random seeds.
pub(crate) const SEED_SECRET_KEY: &str = "seed-secret";

/// The stored installation secret as its 32 bytes; a value of another length is corrupt (the
/// error says how long it was, never what it holds).
pub(crate) fn secret_bytes(stored: &[u8]) -> super::Result<[u8; 32]> {
    stored.try_into().map_err(|_| {
        super::Error::Corrupt(format!(
            "the installation's seed secret is {} bytes, not 32",
            stored.len()
        ))
    })
}

/// A value bound to a statement built at run time.
pub(crate) enum Bind {
    /// Text.
    Text(String),
    /// A 64-bit integer.
    Int(i64),
}

/// The SELECT of one page of `table` (`lease` or `resource`) under `query`, newest first, one
/// row more than the page holds (it says whether there is a next page), and its values in
/// order: only the filters asked for appear, so each can use its index.
pub(crate) fn page_sql(table: &str, query: &super::ListQuery) -> (String, Vec<Bind>) {
    let mut conditions = Vec::new();
    let mut binds = Vec::new();
    let mut when = |condition: &str, bind: Bind| {
        binds.push(bind);
        conditions.push(condition.replace('?', &format!("${}", binds.len())));
    };
    if let Some(status) = &query.status {
        when("status = ?", Bind::Text(status.clone()));
    }
    if let Some(resource_type) = &query.resource_type {
        when("resource_type = ?", Bind::Text(resource_type.clone()));
    }
    if let Some(blueprint) = query.blueprint {
        let condition = match table {
            "lease" => "resource_id IN (SELECT id FROM resource WHERE blueprint_id = ?)",
            _ => "blueprint_id = ?",
        };
        when(condition, Bind::Int(blueprint.number()));
    }
    if let (Some(owner), "lease") = (&query.owner, table) {
        when("owner = ?", Bind::Text(owner.clone()));
    }
    if let Some(before) = query.before {
        when("id < ?", Bind::Int(before));
    }
    if query.failed {
        conditions.push("end_kind = 'broken'".to_string());
    }
    let filter = match conditions.is_empty() {
        true => String::new(),
        false => format!(" WHERE {}", conditions.join(" AND ")),
    };
    binds.push(Bind::Int(i64::from(query.limit) + 1));
    let sql = format!(
        "SELECT * FROM {table}{filter} ORDER BY id DESC LIMIT ${}",
        binds.len()
    );
    (sql, binds)
}

/// A page from up to `limit + 1` rows: the extra row only says there is a next page.
pub(crate) fn paged<T>(mut items: Vec<T>, limit: u32, number: fn(&T) -> i64) -> super::Page<T> {
    let more = items.len() > limit as usize;
    items.truncate(limit as usize);
    let next = more.then(|| items.last().map(number)).flatten();
    super::Page { items, next }
}

/// One of two statements, by the object's table (statements are static text).
pub(crate) fn by_table(
    object: super::ObjectId,
    resource: &'static str,
    lease: &'static str,
) -> super::Result<&'static str> {
    match object {
        super::ObjectId::Resource(_) => Ok(resource),
        super::ObjectId::Lease(_) => Ok(lease),
        super::ObjectId::Blueprint(_) => Err(super::Error::NotFound(format!(
            "{object} is not a lease or resource"
        ))),
    }
}

/// What `blueprint update` changed, for the blueprint's log.
pub(crate) fn update_message(
    before: &super::Blueprint,
    update: &super::BlueprintUpdate,
    author: &str,
) -> String {
    let short = |digest: &str| digest.chars().take(12).collect::<String>();
    let mut changes = Vec::new();
    if before.component != update.digest {
        changes.push(format!(
            "component {} ({}) → {} ({})",
            short(&before.component),
            before.component_name,
            short(&update.digest),
            update.component_name
        ));
    }
    if before.config != update.config {
        let clip = |config: &str| match config.char_indices().nth(200) {
            Some((end, _)) => format!("{}…", &config[..end]),
            None => config.to_string(),
        };
        changes.push(format!(
            "config {} → {}",
            clip(&before.config),
            clip(&update.config)
        ));
    }
    if changes.is_empty() {
        changes.push("nothing changed".into());
    }
    format!(
        "updated by {author} to version {}: {}",
        before.version + 1,
        changes.join("; ")
    )
}

/// Grants as one line for log messages.
pub(crate) fn grant_list(grants: &[crate::grant::Grant]) -> String {
    grants
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
