-- The executor looks up, before trading a decision, whether its account already placed an order
-- for it (a crash between the fill and the decision's record): orders by the risk check they
-- carry, which is named after the decision.

CREATE INDEX orders_check_id ON orders (check_id);
