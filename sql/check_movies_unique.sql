-- check: one movies row per item_id, every movie has a title and at least one genre.
with counted as (
    select item_id, count(*) as n_rows, min(title) as title, min(len(genres)) as n_genres
    from {{movies}}
    group by item_id
)
select * from counted
where n_rows > 1 or item_id is null or title is null or n_genres is null or n_genres < 1
order by item_id
limit 10
