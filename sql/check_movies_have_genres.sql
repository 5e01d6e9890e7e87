-- check: every movie has at least one genre.
select item_id, title, genres from {{movies}}
where genres is null or len(genres) < 1
order by item_id
limit 10
