-- terra.compile_ledger_guards() builds the prune's condition itself, bounded to the batch's id
-- range; the unbounded one nothing calls any more would only mislead.
DROP FUNCTION terra.ledger_unreferenced_condition();
