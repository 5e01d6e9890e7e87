-- question: per genre, how much of the catalogue the top-10 lists reach and what share of slots it takes.
-- no variables. DuckDB CLI, on the warehouse file: .read sql/query_coverage_by_genre.sql
with catalogue as (
    select item_id, unnest(genres) as genre from movies
),
top10 as (
    select item_id from recommendations where rank <= 10
),
slots as (
    select catalogue.genre, count(*) as n_slots, count(distinct top10.item_id) as n_items_recommended
    from top10
    join catalogue on catalogue.item_id = top10.item_id
    group by catalogue.genre
),
sizes as (
    select genre, count(*) as n_items from catalogue group by genre
),
total as (
    select count(*) as n_slots_total from top10
)
select
    sizes.genre,
    sizes.n_items,
    coalesce(slots.n_items_recommended, 0) as n_items_recommended,
    round(coalesce(slots.n_items_recommended, 0) / sizes.n_items, 4) as catalogue_coverage,
    round(coalesce(slots.n_slots, 0) / total.n_slots_total, 4) as share_of_slots
from sizes
cross join total
left join slots on slots.genre = sizes.genre
order by share_of_slots desc, sizes.genre
