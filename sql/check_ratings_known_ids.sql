-- check: every rated user is in users and every rated item is in movies.
with unknown as (
    select r.user_id, r.item_id,
        u.user_id is null as unknown_user,
        m.item_id is null as unknown_item
    from {{ratings}} as r
    left join {{users}} as u on u.user_id = r.user_id
    left join {{movies}} as m on m.item_id = r.item_id
    where u.user_id is null or m.item_id is null
)
select * from unknown
order by user_id, item_id
limit 10
