-- is $id a {{column}} of {{table}}? One row: known, n_rows, min_id, max_id (for a helpful refusal).
with ids as (
    select {{column}} as id from {{table}}
)
select
    count(*) filter (where id = $id) > 0 as known,
    count(*) as n_rows,
    min(id) as min_id,
    max(id) as max_id
from ids
