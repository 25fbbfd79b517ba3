mod risk;
