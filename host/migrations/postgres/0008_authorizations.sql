-- Authorizations (grants `use:NAME`, host/src/authorization.rs): a blueprint may hold supporting
-- leases only on the blueprints the operator names. So that nothing in use breaks on upgrade,
-- each blueprint is authorized for what its supporting leases so far imply: the blueprint of
-- every resource one of them was acquired on and, for a live one not acquired yet, every
-- blueprint of its type. Grants it already holds keep their order; the new ones follow by id.
UPDATE blueprint SET grants = (
    SELECT json_agg(grant_text ORDER BY part, position)::text FROM (
        SELECT 0 AS part, held.position, held.grant_text
        FROM json_array_elements_text(blueprint.grants::json)
             WITH ORDINALITY AS held(grant_text, position)
        UNION ALL
        SELECT 1, provider.id, 'use:' || provider.name FROM blueprint AS provider
        WHERE (provider.id IN (
                   SELECT used.blueprint_id FROM lease
                   JOIN resource AS parent ON parent.id = lease.parent_resource_id
                   JOIN resource AS used ON used.id = lease.resource_id
                   WHERE parent.blueprint_id = blueprint.id)
               OR provider.resource_type IN (
                   SELECT lease.resource_type FROM lease
                   JOIN resource AS parent ON parent.id = lease.parent_resource_id
                   WHERE parent.blueprint_id = blueprint.id AND lease.resource_id IS NULL
                     AND lease.status NOT IN ('destroyed', 'broken')))
          AND 'use:' || provider.name NOT IN
              (SELECT json_array_elements_text(blueprint.grants::json))
    ) AS merged
)
WHERE id IN (SELECT parent.blueprint_id FROM lease
             JOIN resource AS parent ON parent.id = lease.parent_resource_id);
