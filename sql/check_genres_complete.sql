-- check: genres holds exactly $n_genres rows with ids 0..n-1 and distinct names.
with summary as (
    select count(*) as n_rows, count(distinct name) as n_names,
        min(genre_id) as min_id, max(genre_id) as max_id
    from {{genres}}
)
select * from summary
where n_rows <> $n_genres or n_names <> $n_genres or min_id <> 0 or max_id <> $n_genres - 1
