-- set-up for query_publication_diff: the Parquet files of the two publications to compare
-- ($old_publication_id, $new_publication_id), found through publications.snapshot_path.
set variable publication_diff_files = (
    with chosen as (
        select snapshot_path
        from {{publications}}
        where publication_id in ($old_publication_id, $new_publication_id)
    )
    select list(snapshot_path || '/recommendations.parquet') from chosen
)
