-- question: what changed between two publications (the older by created_at is "old"): users whose
-- top-10 changed, mean overlap of top-10 lists, items entering/leaving.
-- variables: publication_diff_ids, a list of two publication ids in either order (default: the two
-- newest publications). DuckDB CLI, on the warehouse file:
--   set variable publication_diff_ids = ['<old publication id>', '<new publication id>'];
--   .read sql/query_publication_diff.sql
-- Two statements: read_parquet takes its file list as a constant, so the first one stores the two
-- snapshots' Parquet files in the variable publication_diff_files.
set variable publication_diff_files = (
    with newest as (
        select list(publication_id order by created_at desc, publication_id desc)[1:2] as ids
        from publications
    ),
    chosen as (
        select snapshot_path
        from publications
        where list_contains(coalesce(getvariable('publication_diff_ids'), (select ids from newest)),
                            publication_id)
    )
    select list(snapshot_path || '/recommendations.parquet' order by snapshot_path) from chosen
);
with snapshots as (
    select user_id, rank, item_id, publication_id
    from read_parquet(getvariable('publication_diff_files'))
    where rank <= 10
),
aged as (
    select publication_id, row_number() over (order by created_at, publication_id) as age
    from publications
    where publication_id in (select distinct publication_id from snapshots)
),
old as (
    select snapshots.* from snapshots join aged using (publication_id) where aged.age = 1
),
new as (
    select snapshots.* from snapshots join aged using (publication_id) where aged.age = 2
),
per_user as (
    select
        coalesce(new.user_id, old.user_id) as user_id,
        count(new.item_id) filter (where old.item_id is not null) as n_kept,
        count(new.item_id) as n_new,
        bool_or(new.rank is distinct from old.rank) as changed
    from new
    full join old on old.user_id = new.user_id and old.item_id = new.item_id
    group by 1
),
entering as (
    select count(distinct item_id) as n from new where item_id not in (select item_id from old)
),
leaving as (
    select count(distinct item_id) as n from old where item_id not in (select item_id from new)
)
select
    (select publication_id from aged where age = 1) as old_publication_id,
    (select publication_id from aged where age = 2) as new_publication_id,
    count(*) as n_users,
    count(*) filter (where changed) as n_users_changed,
    round(avg(n_kept / greatest(n_new, 1)), 4) as mean_top10_overlap,
    (select n from entering) as n_items_entering,
    (select n from leaving) as n_items_leaving
from per_user
