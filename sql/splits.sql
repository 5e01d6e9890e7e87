-- splits: one row per stored split, read from each splits/<split_id>/split.json.
-- $files: list of split.json paths; $current: the split id in splits/CURRENT ('' when none).
create or replace table {{splits}} as
with manifests as (
    select *
    from read_json(
        $files,
        columns = {
            split_id: 'varchar',
            strategy: 'varchar',
            params: 'json',
            data_hash: 'varchar',
            counts: 'struct(train bigint, valid bigint, test bigint)',
            created_at: 'timestamptz'
        }
    )
)
select
    split_id,
    strategy,
    params,
    data_hash,
    counts.train as train_rows,
    counts.valid as valid_rows,
    counts.test as test_rows,
    created_at,
    split_id = $current as is_current
from manifests
order by created_at, split_id
