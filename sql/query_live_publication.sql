-- question: which publication is this warehouse serving? One row per published table with its
-- publication id(s), row count, whether the id is listed in publications (a consistent read
-- shows one id for both tables, listed) and whether it is stale (scored on other data than the
-- warehouse's ratings: items rated since were filtered out, so n_rows can be below the recorded count).
-- no variables. DuckDB CLI, on the warehouse file: .read sql/query_live_publication.sql
with ids as (
    select 'recommendations' as table_name, publication_id, count(*) as n_rows
    from recommendations
    group by publication_id
    union all
    select 'similar_items', publication_id, count(*)
    from similar_items
    group by publication_id
)
select
    ids.table_name,
    ids.publication_id,
    ids.n_rows,
    exists (select 1 from publications as p where p.publication_id = ids.publication_id) as listed,
    coalesce((select bool_or(p.stale) from publications as p where p.publication_id = ids.publication_id),
             true) as stale
from ids
order by ids.table_name, ids.publication_id
